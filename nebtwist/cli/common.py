"""Plumbing shared by the ``one*`` command-line tools.

Each tool (:mod:`nebtwist.cli.onehost`, ...) describes its subcommands with
:mod:`argparse` and hands them to :func:`run_main`, which parses the
arguments, runs the chosen handler with a :class:`Context` and turns every
failure into one message on stderr and exit status 1 (never a traceback).
Server errors are printed exactly as the server wrote them.

Also here: reading the server's XML replies (hardened :mod:`lxml`),
fixed-width tables, ``KEY : value`` sections, template dumps, time
formatting, and resolving ``<id|name>`` arguments through pool listings.
"""

import argparse
import sys
import time

from lxml import etree

from nebtwist.client import OneClient, OneError

#: Pool filter flags of ``one.*pool.info`` (3.4).
FILTER_MINE = -3
FILTER_ALL = -2
FILTER_MINE_GROUP = -1

#: Width of the label column in ``KEY : value`` sections.
LABEL_WIDTH = 22


class CommandError(Exception):
    """A user-facing failure detected on the client side (bad argument, ...)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class _ParserExit(Exception):
    """Raised instead of :func:`sys.exit` by :class:`CliParser`."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


class CliParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that writes to given streams and never exits.

    Subclasses made by :func:`make_parser` set ``out_stream`` and
    ``err_stream``; subparsers inherit them because argparse builds them
    with ``type(parent)``.  Usage errors end with status 1.
    """

    out_stream = None
    err_stream = None

    def _print_message(self, message, file=None):
        if not message:
            return
        if file is None or file is sys.stdout:
            file = self.out_stream or sys.stdout
        elif file is sys.stderr:
            file = self.err_stream or sys.stderr
        file.write(message)

    def exit(self, status=0, message=None):
        """Print ``message`` on stderr and stop parsing with ``status``."""
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExit(status)

    def error(self, message):
        """Report a usage error (usage line + message) and stop with status 1."""
        self.print_usage(sys.stderr)
        self.exit(1, "%s: error: %s\n" % (self.prog, message))


def make_parser(prog, description, stdout, stderr):
    """Build the top-level parser of a tool, bound to ``stdout``/``stderr``.

    It accepts ``-v/--verbose`` and ``-x/--xml`` before the subcommand;
    :func:`add_command` accepts them after it too.
    """
    cls = type("Parser", (CliParser,), {"out_stream": stdout, "err_stream": stderr})
    parser = cls(prog=prog, description=description)
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=False,
        help="verbose output (create prints the new object's ID)",
    )
    parser.add_argument(
        "-x", "--xml", action="store_true", default=False,
        help="print the raw XML reply (list and show)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    return parser, subparsers


def add_command(subparsers, name, handler, help_text, xml=False):
    """Add subcommand ``name`` running ``handler(ctx, args)``; returns its parser.

    ``-v`` is accepted after the subcommand as well; ``xml=True`` also
    accepts ``-x``.
    """
    sub = subparsers.add_parser(name, help=help_text, description=help_text)
    sub.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="verbose output",
    )
    if xml:
        sub.add_argument(
            "-x", "--xml", action="store_true", default=argparse.SUPPRESS,
            help="print the raw XML reply",
        )
    sub.set_defaults(handler=handler)
    return sub


class Context:
    """What a subcommand handler works with: parsed args, streams, a client.

    The :class:`~nebtwist.client.OneClient` is created on first use of
    :attr:`client`, so commands that fail early never need credentials.
    """

    def __init__(self, args, stdout, stderr, environ=None, client_factory=None):
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.environ = environ
        self._client_factory = client_factory or (lambda: OneClient(environ=environ))
        self._client = None

    @property
    def client(self):
        """The XML-RPC client (built lazily)."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def call(self, method, *args):
        """Shortcut for ``self.client.call(method, *args)``."""
        return self.client.call(method, *args)

    def out(self, line=""):
        """Write one line to stdout."""
        self.stdout.write(line + "\n")

    def verbose(self):
        """True when ``-v`` was given (before or after the subcommand)."""
        return bool(getattr(self.args, "verbose", False))

    def want_xml(self):
        """True when ``-x`` was given."""
        return bool(getattr(self.args, "xml", False))

    def print_xml(self, body):
        """Print a raw XML reply as received."""
        body = str(body)
        self.stdout.write(body if body.endswith("\n") else body + "\n")

    def close(self):
        """Close the client connection, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None


def run_main(prog, description, configure, argv=None, stdout=None, stderr=None,
             environ=None, client_factory=None):
    """Run a tool: parse ``argv``, dispatch, map failures to exit status 1.

    ``configure(subparsers)`` adds the tool's subcommands (with
    :func:`add_command`).  ``stdout``/``stderr`` default to the ``sys``
    streams; ``environ`` replaces :data:`os.environ` for the client
    settings.  Returns the exit status.
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser, subparsers = make_parser(prog, description, stdout, stderr)
    configure(subparsers)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except _ParserExit as e:
        return e.status
    ctx = Context(args, stdout, stderr, environ, client_factory)
    try:
        args.handler(ctx, args)
        return 0
    except (OneError, CommandError) as e:
        _report(stderr, str(e))
        return 1
    except KeyboardInterrupt:
        _report(stderr, "Interrupted")
        return 1
    except BrokenPipeError:
        return 1
    except Exception as e:  # never show a traceback to the user
        _report(stderr, "Unexpected error: %s: %s"
                % (e.__class__.__name__, " ".join(str(e).split())))
        return 1
    finally:
        ctx.close()


def _report(stderr, message):
    """Print an error message on stderr."""
    try:
        stderr.write(message if message.endswith("\n") else message + "\n")
        stderr.flush()
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------- XML

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def parse_xml(body):
    """Parse an XML reply from the server into an element (hardened parser).

    Namespaces, if the server sent any, are stripped so lookups can use
    plain names.  Raises :class:`CommandError` on malformed XML.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    try:
        root = etree.fromstring(body, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as e:
        raise CommandError("Cannot parse the server's XML reply: %s" % e) from None
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = etree.QName(el).localname
    return root


def text(el, path, default=""):
    """Text of the element at ``path`` below ``el`` (``default`` if absent)."""
    if el is None:
        return default
    found = el.find(path)
    if found is None:
        return default
    return found.text if found.text is not None else ""


def integer(el, path, default=0):
    """Integer value of the element at ``path`` (``default`` if absent or not a number)."""
    value = text(el, path, None)
    if value is None:
        return default
    try:
        return int(value.strip())
    except ValueError:
        try:
            return int(float(value.strip()))
        except ValueError:
            return default


def template_lines(template):
    """Render a ``<TEMPLATE>`` element as ``KEY=VALUE`` lines.

    Attributes are sorted by name (stable, so repeated vectors keep their
    order).  Vector attributes print as::

        NIC=[
          IP=192.168.0.5,
          NETWORK=One-TD ]
    """
    if template is None:
        return []
    lines = []
    for child in sorted((c for c in template if isinstance(c.tag, str)), key=lambda c: c.tag):
        subs = [s for s in child if isinstance(s.tag, str)]
        if not subs:
            lines.append("%s=%s" % (child.tag, child.text or ""))
            continue
        subs.sort(key=lambda s: s.tag)
        lines.append("%s=[" % child.tag)
        for i, sub in enumerate(subs):
            end = " ]" if i == len(subs) - 1 else ","
            lines.append("  %s=%s%s" % (sub.tag, sub.text or "", end))
    return lines


# ---------------------------------------------------------------- output


def now():
    """Current time in seconds since the epoch (patchable in tests)."""
    return time.time()


def format_time(epoch):
    """``MM/DD HH:MM:SS`` in local time, or ``-`` for 0 (never)."""
    try:
        epoch = int(epoch)
    except (TypeError, ValueError):
        return "-"
    if epoch <= 0:
        return "-"
    return time.strftime("%m/%d %H:%M:%S", time.localtime(epoch))


def format_elapsed(seconds):
    """``DD HH:MM:SS`` with two-digit days, e.g. ``00 00:00:28``."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return "%02d %02d:%02d:%02d" % (days, hours, minutes, secs)


class Column:
    """A table column: header, minimum width, alignment and a value getter.

    ``getter(row)`` returns the cell value (converted with :func:`str`);
    ``align`` is ``"left"`` or ``"right"``.
    """

    def __init__(self, header, width, getter, align="left"):
        self.header = header
        self.width = width
        self.getter = getter
        self.align = align


def render_table(columns, rows):
    """Lay out ``rows`` under ``columns``: one header line, then one line per row.

    Every column is at least its declared width and as wide as its widest
    cell, so all lines share the same column positions.  Cells are
    separated by one space; trailing blanks are dropped.
    """
    cells = [[str(c.getter(row)) for c in columns] for row in rows]
    widths = [
        max([c.width, len(c.header)] + [len(r[i]) for r in cells])
        for i, c in enumerate(columns)
    ]

    def line(values):
        parts = []
        for col, width, value in zip(columns, widths, values):
            parts.append(value.rjust(width) if col.align == "right" else value.ljust(width))
        return " ".join(parts).rstrip()

    return [line([c.header for c in columns])] + [line(r) for r in cells]


def print_table(ctx, columns, rows):
    """Print :func:`render_table` output on the context's stdout."""
    for row_line in render_table(columns, rows):
        ctx.out(row_line)


def print_pool(ctx, body, columns, tag):
    """A pool reply as ``list`` shows it: the raw XML with ``-x``, else one
    table row per ``tag`` element."""
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    print_table(ctx, columns, parse_xml(body).findall(tag))


def print_section(ctx, title, pairs):
    """Print a ``TITLE`` line followed by ``LABEL : value`` lines."""
    ctx.out(title)
    for label, value in pairs:
        ctx.out("%-*s: %s" % (LABEL_WIDTH, label, value))


# ---------------------------------------------------------------- args


def parse_int(value):
    """``int(value)`` if ``value`` is a (possibly negative) integer, else ``None``."""
    try:
        return int(value.strip())
    except (AttributeError, ValueError):
        return None


def find_by_name(pool, element, name, kind):
    """Id of the single ``element`` in ``pool`` whose NAME is ``name``.

    Raises :class:`CommandError` if there is none or more than one.
    """
    matches = [integer(el, "ID", -1) for el in pool.findall(element) if text(el, "NAME") == name]
    if not matches:
        raise CommandError("%s named %s not found." % (kind, name))
    if len(matches) > 1:
        raise CommandError(
            "There are multiple %ss with name %s: %s."
            % (kind, name, ", ".join(str(m) for m in matches))
        )
    return matches[0]


def resolve(ctx, value, pool_method, pool_args, element, kind):
    """Turn an ``<id|name>`` argument into an id.

    Numbers are taken as ids; anything else is looked up by NAME in the
    reply of ``pool_method(session, *pool_args)``.
    """
    oid = parse_int(value)
    if oid is not None:
        return oid
    pool = parse_xml(ctx.call(pool_method, *pool_args))
    return find_by_name(pool, element, value, kind)


def resolve_host(ctx, value):
    """Host id for a host id or name."""
    return resolve(ctx, value, "one.hostpool.info", (), "HOST", "HOST")


def resolve_user(ctx, value):
    """User id for a user id or name."""
    return resolve(ctx, value, "one.userpool.info", (), "USER", "USER")


def pool_filter(ctx, value):
    """The pool filter flag for a list command's optional filter argument.

    ``a``/``all`` (default) -> -2, ``m``/``mine`` -> -3, ``g``/``group``
    -> -1, a number -> that value, anything else is a user name resolved
    to its uid.
    """
    if value is None:
        return FILTER_ALL
    key = value.strip().lower()
    if key in ("a", "all"):
        return FILTER_ALL
    if key in ("m", "mine"):
        return FILTER_MINE
    if key in ("g", "group"):
        return FILTER_MINE_GROUP
    return resolve_user(ctx, value)


def read_template_file(path):
    """Contents of a template file, or :class:`CommandError` if unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CommandError("Template file %s not found" % path) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise CommandError("Cannot read template file %s: %s" % (path, reason)) from None


def print_created(ctx, oid):
    """After a create: print ``ID: <id>`` when verbose."""
    if ctx.verbose():
        ctx.out("ID: %s" % oid)
