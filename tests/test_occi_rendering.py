"""OCCI 1.1 rendering, model and translation units (nebtwist.api.occi), pure:
no daemon, no HTTP."""

from twisted.trial.unittest import TestCase

from nebtwist.api.occi import build, entities, model
from nebtwist.api.occi.rendering import (BadRendering, Category, choose_type,
                                         parse_structures, render_value)
from nebtwist.core.objects import (ACTIVE, DONE, HOLD, PENDING, RUNNING, SUSPENDED, UNKNOWN,
                                   User, VirtualMachine)
from nebtwist.template import Template

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
KIND = f'compute; scheme="{INFRA}"; class="kind"'


def parse_plain(text):
    return parse_structures([], text.encode(), "text/plain")


class ParseTests(TestCase):
    """parse_structures (GFD.185 "Syntax and Semantics of the Rendering")."""

    def test_plain_body(self):
        """GFD.185 "The Content-type text/plain": one structure a line, in the
        shape of pOCCI's ``text-ok-opennebula-compute.txt`` (no blanks after
        ``;``); a bare token value (GFD.185's ``occi.compute.hostname=foobar``)
        is a string."""
        st = parse_plain(
            f'Category: compute;scheme="{INFRA}";class="kind";title="compute resource"\n'
            'Category: uuid_ttylinux_0;scheme="http://occi.example.com/occi/infrastructure/'
            'os_tpl#";class="mixin"\n'
            f'Link: </storage/0>;rel="{INFRA}storage";self="/link/storagelink/compute_1_disk_0"'
            f';category="{INFRA}storagelink";occi.storagelink.deviceid="/dev/hda"\n'
            'X-OCCI-Attribute: occi.core.title="one; two, \\"three\\""\n'
            "X-OCCI-Attribute: occi.compute.cores=2\n"
            "X-OCCI-Attribute: occi.compute.memory=0.125\n"
            "X-OCCI-Attribute: org.example.flag=true\n"
            "X-OCCI-Attribute: occi.compute.hostname=foobar\n")
        self.assertEqual(st.categories, [
            ("compute", INFRA, "kind"),
            ("uuid_ttylinux_0", "http://occi.example.com/occi/infrastructure/os_tpl#",
             "mixin")])
        self.assertEqual(st.attributes, {"occi.core.title": 'one; two, "three"',
                                         "occi.compute.cores": 2,
                                         "occi.compute.memory": 0.125,
                                         "org.example.flag": True,
                                         "occi.compute.hostname": "foobar"})
        [link] = st.links
        self.assertEqual((link.target, link.rel, link.self_uri, link.category,
                          link.attributes),
                         ("/storage/0", INFRA + "storage", "/link/storagelink/compute_1_disk_0",
                          [INFRA + "storagelink"], {"occi.storagelink.deviceid": "/dev/hda"}))

    def test_headers_comma_lists(self):
        """GFD.185 "Syntax and Semantics of the Rendering": several values in
        one header, comma separated, or in repeated headers: both are read."""
        st = parse_structures([
            ("Category", f'{KIND}, small; scheme="http://x/tpl#"; class="mixin"'),
            ("X-OCCI-Attribute", 'occi.core.title="a,b", occi.compute.cores=1'),
            ("X-OCCI-Attribute", "occi.compute.memory=2.5"),
            ("X-OCCI-Location", "http://h/compute/1, http://h/compute/2"),
            ("Host", "ignored")], b"OK", "text/occi")
        self.assertEqual(st.categories, [("compute", INFRA, "kind"),
                                         ("small", "http://x/tpl#", "mixin")])
        self.assertEqual(st.attributes, {"occi.core.title": "a,b", "occi.compute.cores": 1,
                                         "occi.compute.memory": 2.5})
        self.assertEqual(st.locations, ["http://h/compute/1", "http://h/compute/2"])

    def test_capitalised_term_folded(self):
        """pOCCI's capitalisation fixtures: header names in any case; a term
        is compared in lower case."""
        st = parse_structures([("CATEGORY", f'Compute; scheme="{INFRA}"; class="kind"')],
                              b"", "")
        self.assertEqual(st.categories, [("compute", INFRA, "kind")])

    def test_refusals(self):
        """Malformed renderings raise BadRendering (the front's 400), as pOCCI's
        ``text-bad-quote-*`` and ``missing-*`` fixtures expect."""
        for text in [f'Category: compute; scheme="{INFRA}; class="kind"\n',
                     'Category: compute; class="kind"\n',
                     f'Category: compute; scheme="{INFRA}"\n',
                     f'Category: compute; scheme="{INFRA}"; class="thing"\n',
                     f'Category: 9compute; scheme="{INFRA}"; class="kind"\n',
                     "X-OCCI-Attribute: occi.core.title=bare word\n",
                     "X-OCCI-Attribute: occi.core.title\n",
                     "X-OCCI-Attribute: occi..title=1\n",
                     "Link: /network/1; rel=\"x\"\n",
                     "Link: </network/1>\n",
                     "Link: </network/1>; rel=\"x\"; noequals\n",
                     "Something: else\n"]:
            self.assertRaises(BadRendering, parse_plain, text)
        self.assertRaises(BadRendering, parse_structures, [], b"\xff\xfe", "text/plain")
        self.assertRaises(BadRendering, parse_structures, [], b"{}", "application/json")


class RenderTests(TestCase):
    """Writing values and Categories (GFD.185 "Rendering of the OCCI Category,
    Kind and Mixin types", "Rendering of OCCI Entity attributes")."""

    def test_values(self):
        self.assertEqual([render_value(v) for v in (True, False, 3, 0.25, 'a "b" \\ c')],
                         ["true", "false", "3", "0.25", '"a \\"b\\" \\\\ c"'])

    def test_category_round_trip(self):
        """A query-interface Category, rendered whole, parses back to its
        identity; an entity's Category is term, scheme and class only."""
        full = model.COMPUTE.render(full=True)
        for part in (f'scheme="{INFRA}"', 'class="kind"', 'location="/compute/"',
                     "occi.compute.state{immutable}",
                     "http://schemas.ogf.org/occi/infrastructure/compute/action#start"):
            self.assertIn(part, full)
        self.assertEqual(parse_plain(f"Category: {full}\n").categories,
                         [("compute", INFRA, "kind")])
        self.assertEqual(model.COMPUTE.render(full=False), KIND)
        titled = Category("t", "http://x#", "mixin", title='say "hi"').render()
        self.assertIn('title="say \\"hi\\""', titled)

    def test_templates_terms(self):
        """resource_tpl terms follow GFD.185's term grammar."""
        self.assertEqual(model.resource_tpl_term("m1.small"), "m1_small")
        self.assertEqual(model.resource_tpl_term("2x.Large"), "t_2x_large")
        self.assertEqual(model.os_tpl_term(7), "image_7")

    def test_choose_type(self):
        """GFD.185 "Content-type and Accept headers": text/plain by default and
        for wildcards; q-values
        order the choice; q=0 refuses; nothing renderable -> None (406)."""
        for accept, wanted in [(None, "text/plain"), ("", "text/plain"),
                               ("*/*", "text/plain"), ("text/*", "text/plain"),
                               ("text/occi", "text/occi"), ("text/uri-list", "text/uri-list"),
                               ("text/occi;q=0.5, text/plain", "text/plain"),
                               ("text/plain;q=0, text/occi", "text/occi"),
                               ("application/json", None), ("text/plain;q=0", None)]:
            self.assertEqual(choose_type(accept), wanted, accept)


class BuildTests(TestCase):
    """OCCI create requests as nebtwist templates (nebtwist.api.occi.build)."""

    actor = User(5, "helen", "x")

    def compute(self, text, vmtypes=None):
        return Template.parse(build.compute_template(parse_plain(text), self.actor, vmtypes))

    def test_compute_defaults_and_attributes(self):
        """Without a resource_tpl: 1 core, 0.5 GiB; memory GiB -> MB rounded
        up; architecture -> OS ARCH; hostname -> CONTEXT; Links -> NIC/DISK."""
        t = self.compute(f"Category: {KIND}\n")
        self.assertEqual((t.get("NAME"), t.get("CPU"), t.get("VCPU"), t.get("MEMORY")),
                         ("occi-vm", "1", "1", "512"))
        t = self.compute(
            f"Category: {KIND}\n"
            f'Category: image_3; scheme="{model.OS_TPL_SCHEME}"; class="mixin"\n'
            'X-OCCI-Attribute: occi.core.title="db"\n'
            "X-OCCI-Attribute: occi.compute.memory=0.3\n"
            'X-OCCI-Attribute: occi.compute.architecture="x64"\n'
            'X-OCCI-Attribute: occi.compute.hostname="db.example.com"\n'
            "X-OCCI-Attribute: occi.compute.speed=2.4\n"
            f'Link: <http://h/network/2>; rel="{INFRA}network"; '
            'occi.networkinterface.address="10.0.0.9"\n'
            f'Link: </storage/4>; rel="{INFRA}storage"; occi.storagelink.deviceid="/dev/hdb"\n')
        self.assertEqual((t.get("NAME"), t.get("MEMORY"), t.get("OS"), t.get("CONTEXT")),
                         ("db", "308", {"ARCH": "x86_64"}, {"HOSTNAME": "db.example.com"}))
        self.assertEqual(t.get_all("DISK"), [{"IMAGE_ID": "3"},
                                             {"IMAGE_ID": "4", "TARGET": "hdb"}])
        self.assertEqual(t.get_all("NIC"), [{"NETWORK_ID": "2", "IP": "10.0.0.9"}])

    def test_compute_refusals(self):
        """One Kind, known Mixins, a resource_tpl needs an os_tpl, sane values."""
        rtpl = f'Category: m1_small; scheme="{model.RESOURCE_TPL_SCHEME}"; class="mixin"\n'
        for text in ["",
                     f"Category: {KIND}\nCategory: {KIND}\n",
                     f'Category: network; scheme="{INFRA}"; class="kind"\n',
                     f'Category: {KIND}\nCategory: stop; scheme="{INFRA}"; class="action"\n',
                     f'Category: {KIND}\nCategory: image_x; scheme="{model.OS_TPL_SCHEME}"; '
                     'class="mixin"\n',
                     f"Category: {KIND}\n{rtpl}",
                     f"Category: {KIND}\nX-OCCI-Attribute: occi.compute.cores=1.5\n",
                     f"Category: {KIND}\nX-OCCI-Attribute: occi.compute.memory=0\n",
                     f"Category: {KIND}\nX-OCCI-Attribute: occi.compute.memory=\"1\"\n",
                     f'Category: {KIND}\nX-OCCI-Attribute: occi.compute.architecture="arm"\n',
                     f'Category: {KIND}\nLink: </host/1>; rel="{INFRA}network"\n',
                     f'Category: {KIND}\nLink: </elsewhere/1>; rel="http://x#y"\n',
                     f'Category: {KIND}\nLink: </storage/1>; rel="{INFRA}storage"; '
                     'occi.storagelink.deviceid="/dev/../x"\n']:
            self.assertRaises(BadRendering, self.compute, text)

    def test_network_and_storage(self):
        """ipnetwork -> RANGED NETWORK_ADDRESS (+ GATEWAY, VLAN_ID, BRIDGE);
        storage size GiB -> DATABLOCK SIZE MB, rounded up."""
        ipnet = f'Category: ipnetwork; scheme="{model.IPNETWORK_SCHEME}"; class="mixin"\n'
        kind = f'Category: network; scheme="{INFRA}"; class="kind"\n'
        t = Template.parse(build.network_template(parse_plain(
            kind + ipnet + 'X-OCCI-Attribute: occi.network.address="10.2.0.0/16"\n'
            "X-OCCI-Attribute: occi.network.vlan=12\n"
            'X-OCCI-Attribute: org.opennebula.network.bridge="br9"\n')))
        self.assertEqual((t.get("TYPE"), t.get("NETWORK_ADDRESS"), t.get("VLAN"),
                          t.get("VLAN_ID"), t.get("BRIDGE")),
                         ("RANGED", "10.2.0.0/16", "YES", "12", "br9"))
        self.assertRaises(BadRendering, build.network_template, parse_plain(kind + ipnet))
        self.assertRaises(BadRendering, build.network_template, parse_plain(
            kind + 'X-OCCI-Attribute: occi.network.address="10.2.0.0/16"\n'
            "X-OCCI-Attribute: occi.network.vlan=5000\n"))
        skind = f'Category: storage; scheme="{INFRA}"; class="kind"\n'
        t = Template.parse(build.storage_template(parse_plain(
            skind + "X-OCCI-Attribute: occi.storage.size=1.5\n")))
        self.assertEqual((t.get("TYPE"), t.get("SIZE"), t.get("FSTYPE")),
                         ("DATABLOCK", "1536", "raw"))
        self.assertRaises(BadRendering, build.storage_template, parse_plain(skind))
        self.assertRaises(BadRendering, build.storage_template, parse_plain(
            skind + "X-OCCI-Attribute: occi.storage.size=-1\n"))


class StateTests(TestCase):
    """OpenNebula 3.4 states as GFD.184 compute states, action Links and actions."""

    def vm(self, state, lcm=0):
        return VirtualMachine(1, "v", 0, 0, "oneadmin", "oneadmin", state=state, lcm_state=lcm)

    def test_states_and_actions(self):
        cases = [(PENDING, 0, "inactive", []), (HOLD, 0, "inactive", ["start"]),
                 (ACTIVE, 1, "active", []), (ACTIVE, UNKNOWN, "active", ["restart"]),
                 (ACTIVE, RUNNING, "active", ["stop", "restart", "suspend"]),
                 (SUSPENDED, 0, "suspended", ["start"]), (DONE, 0, "inactive", [])]
        for state, lcm, occi_state, actions in cases:
            vm = self.vm(state, lcm)
            self.assertEqual((entities.compute_state(vm),
                              [a.term for a in entities.compute_actions(vm)]),
                             (occi_state, actions), (state, lcm))

    def test_action_mapping(self):
        """compute Actions and methods -> one.vm.action names (resource.py's table)."""
        from nebtwist.api.occi.resource import _compute_action

        running, hold = self.vm(ACTIVE, RUNNING), self.vm(HOLD)
        for vm, term, method, wanted in [
                (hold, "start", None, "release"), (self.vm(SUSPENDED), "start", None, "resume"),
                (running, "stop", None, "shutdown"), (running, "stop", "acpioff", "shutdown"),
                (running, "stop", "poweroff", "cancel"), (running, "restart", "cold", "reboot"),
                (self.vm(ACTIVE, UNKNOWN), "restart", None, "restart"),
                (running, "suspend", "hibernate", "suspend")]:
            self.assertEqual(_compute_action(vm, term, method), wanted, (term, method))
        for term, method in [("stop", "sideways"), ("start", "warm"), ("explode", None)]:
            self.assertRaises(BadRendering, _compute_action, running, term, method)
