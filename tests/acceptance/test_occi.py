"""Acceptance: the OCCI 1.1 front (``API_FRONT = [ NAME = "occi" ]``) of a real
``twistd -n nebula`` with the dummy drivers, driven with ``http.client`` as a
plain HTTP client following OGF GFD.185's examples.

A user who is not oneadmin creates a compute, lists it, watches it reach
RUNNING, restarts, suspends, starts and stops it -- once over ``text/plain``
(structures in the body) and once over ``text/occi`` (structures in headers)
-- and deletes one; ``one.vm.info`` (pyone, as oneadmin) shows the same VMs
in the matching OpenNebula states.
"""

import base64
import hashlib
import http.client
import os
import re

import pyone
from twisted.trial import unittest

from tests.acceptance.cloud import listens
from tests.acceptance.test_seed000 import ADMIN_SESSION, FAST, NebulaDaemon, free_port

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
KIND = f'compute; scheme="{INFRA}"; class="kind"'
USER, PASSWORD = "occiuser", "occipass"
ACTIVE, SUSPENDED, DONE = 3, 5, 6
RUNNING = 3

_ATTR = re.compile(r'^\s*([\w.]+)=(".*"|[^"]\S*)\s*$')


def attributes(values):
    """``{name: value}`` of ``X-OCCI-Attribute`` values (quoted strings
    unquoted, the rest left as text)."""
    out = {}
    for value in values:
        m = _ATTR.match(value)
        if m:
            raw = m.group(2)
            out[m.group(1)] = raw[1:-1] if raw.startswith('"') else raw
    return out


class Answer:
    """``status``, ``headers`` (list of pairs), ``text`` (body)."""

    def __init__(self, status, headers, text):
        self.status, self.headers, self.text = status, headers, text

    def header(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def values(self, name):
        """A structure's values: body lines (text/plain) and headers
        (text/occi, a comma list split outside quotes is not needed here)."""
        prefix = name.lower() + ":"
        lines = [line.split(":", 1)[1].strip() for line in self.text.splitlines()
                 if line.lower().startswith(prefix)]
        return lines + self.header(name)

    def attrs(self):
        return attributes(self.values("X-OCCI-Attribute"))


class OCCIAcceptanceTest(unittest.TestCase):

    def setUp(self):
        self.occi_port = free_port()
        location = os.path.abspath(self.mktemp())
        self.daemon = NebulaDaemon(location, list(FAST) + [
            'API_FRONT=[NAME="xmlrpc"]',
            f'API_FRONT=[NAME="occi",ENDPOINT="tcp:{self.occi_port}:interface=127.0.0.1"]'])
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.wait_for(lambda: listens(self.occi_port), "the OCCI front")
        self.assertIn("occi front listening on", self.daemon.oned_log())
        self.one = pyone.OneServer(self.daemon.endpoint, session=ADMIN_SESSION)
        for command in (("oneuser", "create", USER, PASSWORD),
                        ("onehost", "create", "host01", "im_dummy", "vmm_dummy", "tm_dummy")):
            rc, _, err = self.daemon.cli(*command)
            self.assertEqual((rc, err), (0, ""))

    def wait_for(self, predicate, message, timeout=60):
        return self.daemon.wait_for(
            predicate, timeout=timeout,
            message=lambda: f"{message}\n{self.daemon.diagnostics(25)}")

    def request(self, method, path, headers=None, body=b"", password=PASSWORD):
        token = base64.b64encode(f"{USER}:{password}".encode()).decode()
        headers = dict({"Authorization": f"Basic {token}"}, **(headers or {}))
        conn = http.client.HTTPConnection("127.0.0.1", self.occi_port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, response.getheaders(),
                          response.read().decode("utf-8"))
        finally:
            conn.close()

    # -- the two renderings ----------------------------------------------------------------

    def send(self, rendering, method, path, categories=(), attrs=(), accept=None):
        """``method path`` with OCCI structures as ``text/plain`` body lines or
        ``text/occi`` headers (GFD.185 "The Content-type text/plain", "... text/occi")."""
        headers = {"Accept": accept or rendering}
        body = b""
        if rendering == "text/plain":
            lines = [f"Category: {c}" for c in categories]
            lines += [f"X-OCCI-Attribute: {a}" for a in attrs]
            body = "".join(line + "\n" for line in lines).encode()
            if body:
                headers["Content-Type"] = "text/plain"
        else:
            if categories:
                headers["Category"] = ", ".join(categories)
            if attrs:
                headers["X-OCCI-Attribute"] = ", ".join(attrs)
            headers["Content-Type"] = "text/occi"
        return self.request(method, path, headers, body)

    def show(self, rendering, vid):
        answer = self.send(rendering, "GET", f"/compute/{vid}")
        self.assertIn(answer.status, (200, 410), answer.text)
        return answer

    def wait_lcm(self, rendering, vid, state, lcm):
        def reached():
            attrs = self.show(rendering, vid).attrs()
            return (attrs.get("org.opennebula.compute.state"),
                    attrs.get("org.opennebula.compute.lcm_state")) == (state, lcm)

        self.wait_for(reached, f"compute {vid} to be {state}/{lcm}")

    def act(self, rendering, vid, term, method=None):
        answer = self.send(rendering, "POST", f"/compute/{vid}?action={term}",
                           [f'{term}; scheme="{ACTION}"; class="action"'],
                           [f'method="{method}"'] if method else ())
        self.assertEqual(answer.status, 200, f"{term}: {answer.text}")

    def lifecycle(self, rendering, title):
        """Create, list, show, restart, suspend, start and stop one compute."""
        created = self.send(rendering, "POST", "/compute/", [KIND], [
            f'occi.core.title="{title}"', "occi.compute.cores=1",
            "occi.compute.memory=0.125"])
        self.assertEqual(created.status, 201, created.text)
        location = created.header("Location")[0]
        self.assertRegex(location, rf"^http://127\.0\.0\.1:{self.occi_port}/compute/\d+$")
        vid = int(location.rsplit("/", 1)[1])

        listing = self.send(rendering, "GET", "/compute/")
        self.assertEqual(listing.status, 200, listing.text)
        self.assertIn(location, listing.values("X-OCCI-Location"))

        self.wait_lcm(rendering, vid, "ACTIVE", "RUNNING")
        shown = self.show(rendering, vid)
        attrs = shown.attrs()
        self.assertEqual((attrs["occi.core.id"], attrs["occi.core.title"],
                          attrs["occi.compute.cores"], attrs["occi.compute.memory"],
                          attrs["occi.compute.state"]),
                         (str(vid), title, "1", "0.125", "active"))
        self.assertIn(f'</compute/{vid}?action=stop>; rel="{ACTION}stop"',
                      shown.values("Link"))
        vm = self.one.vm.info(vid)
        self.assertEqual((vm.NAME, vm.UNAME, vm.STATE, vm.LCM_STATE),
                         (title, USER, ACTIVE, RUNNING))
        self.assertEqual(vm.TEMPLATE["MEMORY"], "128")

        self.act(rendering, vid, "restart")
        self.wait_lcm(rendering, vid, "ACTIVE", "RUNNING")
        self.act(rendering, vid, "suspend")
        self.wait_lcm(rendering, vid, "SUSPENDED", "LCM_INIT")
        self.assertEqual(self.one.vm.info(vid).STATE, SUSPENDED)
        self.assertEqual(self.show(rendering, vid).attrs()["occi.compute.state"], "suspended")
        self.act(rendering, vid, "start")
        self.wait_lcm(rendering, vid, "ACTIVE", "RUNNING")
        self.act(rendering, vid, "stop")
        self.wait_for(lambda: self.show(rendering, vid).status == 410,
                      f"compute {vid} to be gone")
        self.assertEqual(self.one.vm.info(vid).STATE, DONE)
        return vid

    def test_text_plain(self):
        """The life cycle over text/plain; the SHA1-hex password of OpenNebula
        3.x's OCCI client is accepted, a wrong one is 401."""
        self.lifecycle("text/plain", "occi-plain")
        digest = hashlib.sha1(PASSWORD.encode()).hexdigest()
        self.assertEqual(self.request("GET", "/-/", password=digest).status, 200)
        self.assertEqual(self.request("GET", "/-/", password="wrong").status, 401)

    def test_text_occi(self):
        """The life cycle over text/occi (body ``OK``), then a second compute
        deleted (3.4 finalize: DONE) and the query interface in headers."""
        self.lifecycle("text/occi", "occi-headers")
        created = self.send("text/occi", "POST", "/compute/", [KIND],
                            ['occi.core.title="doomed"'])
        self.assertEqual((created.status, created.text), (201, "OK\n"))
        vid = int(created.header("Location")[0].rsplit("/", 1)[1])
        self.assertEqual(self.one.vm.info(vid).NAME, "doomed")
        deleted = self.send("text/occi", "DELETE", f"/compute/{vid}")
        self.assertEqual(deleted.status, 200, deleted.text)
        self.wait_for(lambda: self.one.vm.info(vid).STATE == DONE, f"VM {vid} DONE")
        query = self.send("text/occi", "GET", "/-/")
        self.assertEqual(query.status, 200)
        self.assertTrue(any(v.startswith(KIND) for v in query.header("Category")),
                        query.header("Category"))
