"""REQUIREMENTS and RANK expressions, compiled once into Python closures.

The scheduler matches every pending VM against every host: a VM's
REQUIREMENTS (boolean) filter hosts and its RANK (arithmetic) orders them.
Both are compiled here into plain closures taking a ``lookup`` callable::

    lookup(name: str) -> str | None   # attribute value as text, None if missing

Names are passed to ``lookup`` uppercased (``freecpu`` -> ``"FREECPU"``);
the caller decides where they are looked up (3.4: host TEMPLATE, then
HOST_SHARE, then the HOST element itself).

Behaviour follows OpenNebula 3.4 ``src/xml/expr_parser.l`` (tokens),
``src/xml/expr_bool.y`` (REQUIREMENTS) and ``src/xml/expr_arith.y`` (RANK);
the code is written anew as a regex tokenizer and recursive descent.

Tokens: ``! & | = > < ( ) * + / -`` (``!=`` is ``!`` then ``=``), names
``[A-Za-z][A-Za-z0-9_]*``, ``"quoted"`` strings (a quoted string is
interchangeable with a name, as in 3.4), integers ``[0-9]+`` and floats
``[0-9]+.[0-9]+`` (a ``-`` written right before a number makes it negative);
blanks and line breaks separate tokens.

REQUIREMENTS grammar::

    expr    := unary ( ('&' | '|') unary )*     # same precedence, left-assoc
    unary   := '!' unary | '(' expr ')' | NAME op operand
    op      := '=' | '!' '=' | '>' | '<'        # no '>=' / '<='
    operand := INT | FLOAT | STRING | NAME      # '>' '<' need a number

so ``A=1 | B=1 & C=1`` means ``(A=1 | B=1) & C=1`` and ``!A=1 & B=1`` means
``(!A=1) & B=1``.

* Against an integer the attribute's text is read like C++
  ``istream >> int`` (leading integer, so ``"4.7"`` -> 4); against a float,
  like ``istream >> float``.  Missing or non-numeric -> 0.
* Against a string the attribute's text is matched with shell wildcards
  (``fnmatch.fnmatchcase``: ``*``, ``?``, ``[..]``, ``[!..]``).  A missing or
  empty attribute makes both ``=`` and ``!=`` false, as in 3.4.
* An empty (or blank) expression is always true.

RANK grammar: ``+ - * /`` with the usual precedence (left-assoc), unary
minus, parentheses, numbers and attribute names (read like
``istream >> float``; missing or non-numeric -> 0).  Division by zero gives
0, and a non-finite result (overflow) gives 0.  The result is a ``float``
(3.4 casts it to ``int``).  An empty expression ranks 0.
``A-1`` is accepted as ``A - 1`` (3.4's lexer would read ``-1`` as a number
and reject it).

Errors raise :class:`ExpressionSyntaxError`.  Compiled expressions are
cached (``functools.lru_cache``), so compiling the same text again is cheap.
"""

import fnmatch
import functools
import math
import re

__all__ = ["ExpressionSyntaxError", "compile_requirements", "compile_rank"]


class ExpressionSyntaxError(ValueError):
    """A REQUIREMENTS or RANK expression could not be parsed.

    Attributes: ``message`` (e.g. ``"syntax error, unexpected '=', expecting
    a number"``), ``expression`` (the text), ``line`` (1-based), ``column``
    (1-based column of the offending token's first character) and
    ``end_column`` (of its last; equal to ``column`` at the end of input).
    ``str(error)`` uses OpenNebula's ``expr_bool__error`` format:
    ``"<message> at line <line>, columns <column>:<end_column>"``.
    """

    def __init__(self, message, expression, line, column, end_column=None):
        if end_column is None:
            end_column = column
        self.message = message
        self.expression = expression
        self.line = line
        self.column = column
        self.end_column = end_column
        super().__init__(
            "%s at line %d, columns %d:%d" % (message, line, column, end_column))


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    [ \t\r\n\f\v]*
    (?:
        (?P<float>[0-9]+\.[0-9]+)
      | (?P<int>[0-9]+)
      | (?P<name>[A-Za-z][A-Za-z0-9_]*)
      | (?P<string>"[^"]*")
      | (?P<op>[!&|=<>()*+/^-])
      | (?P<unterminated>")
      | (?P<end>\Z)
      | (?P<bad>.)
    )""", re.X | re.S)

# kinds: "int", "float", "name", "string", "op", "end"; for "op" the value is
# the character itself.


def _tokenize(text):
    """List of (kind, value, start, end) ending with an "end" token."""
    tokens = []
    pos = 0
    match = _TOKEN.match
    while True:
        m = match(text, pos)
        kind = m.lastgroup
        start, pos = m.span(kind)
        if kind == "end":
            tokens.append(("end", None, start, start))
            return tokens
        if kind == "bad":
            _raise(text, start, 1, "syntax error, unexpected character %r"
                   % text[start])
        if kind == "unterminated":
            _raise(text, start, 1, "syntax error, unterminated quoted string")
        value = m.group(kind)
        if kind == "string":
            value = value[1:-1]
        tokens.append((kind, value, start, pos))


def _raise(text, pos, length, message):
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    raise ExpressionSyntaxError(message, text, line, column,
                                column + max(length, 1) - 1)


def _describe(token):
    kind, value, start, end = token
    if kind == "end":
        return "end of expression"
    if kind == "string":
        return 'string "%s"' % value
    if kind == "name":
        return "name '%s'" % value
    if kind in ("int", "float"):
        return "number %s" % value
    return "'%s'" % value


# --------------------------------------------------------------------------
# Attribute conversions (C++ istream >> int / float: leading number or 0)
# --------------------------------------------------------------------------

_INT_PREFIX = re.compile(r"\s*([+-]?[0-9]+)")
_FLOAT_PREFIX = re.compile(
    r"\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")


def _as_int(value):
    if value is None:
        return 0
    if value.isascii() and value.isdigit():
        return int(value)
    m = _INT_PREFIX.match(value)
    return int(m.group(1)) if m else 0


def _as_float(value):
    if value is None:
        return 0.0
    if value.isascii() and value.isdigit():
        return float(value)
    m = _FLOAT_PREFIX.match(value)
    return float(m.group(1)) if m else 0.0


# --------------------------------------------------------------------------
# Parser base
# --------------------------------------------------------------------------

class _Parser:
    __slots__ = ("text", "tokens", "i")

    def __init__(self, text):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self):
        return self.tokens[self.i]

    def advance(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_op(self, char):
        tok = self.tokens[self.i]
        return tok[0] == "op" and tok[1] == char

    def fail(self, expecting, token=None):
        token = token or self.tok
        _raise(self.text, token[2], token[3] - token[2],
               "syntax error, unexpected %s, expecting %s"
               % (_describe(token), expecting))

    def expect_close(self):
        if not self.is_op(")"):
            self.fail("')'")
        self.advance()

    def expect_end(self, expecting):
        tok = self.tok
        if tok[0] == "end":
            return
        if tok[0] == "op" and tok[1] == ")":
            _raise(self.text, tok[2], 1,
                   "syntax error, unexpected ')' without a matching '('")
        self.fail(expecting)

    def signed_number(self):
        """A number token, or '-' written right before one; else None."""
        tok = self.tok
        if tok[0] in ("int", "float"):
            self.advance()
            return tok[0], tok[1]
        if tok[0] == "op" and tok[1] == "-":
            nxt = self.tokens[self.i + 1]
            if nxt[0] in ("int", "float") and nxt[2] == tok[3]:
                self.i += 2
                return nxt[0], "-" + nxt[1]
        return None


# --------------------------------------------------------------------------
# REQUIREMENTS
# --------------------------------------------------------------------------

def _number_test(name, op, number, convert):
    if op == "=":
        return lambda lookup: convert(lookup(name)) == number
    if op == "!=":
        return lambda lookup: convert(lookup(name)) != number
    if op == ">":
        return lambda lookup: convert(lookup(name)) > number
    return lambda lookup: convert(lookup(name)) < number


def _pattern_test(name, op, pattern):
    if not any(c in pattern for c in "*?["):
        def matches(lookup):
            value = lookup(name)
            return bool(value) and value == pattern
    else:
        match = re.compile(fnmatch.translate(pattern)).match

        def matches(lookup):
            value = lookup(name)
            return bool(value) and match(value) is not None
    if op == "=":
        return matches

    def differs(lookup):
        # 3.4 expr_bool.y: a missing or empty attribute fails both = and !=.
        return bool(lookup(name)) and not matches(lookup)

    return differs


class _BoolParser(_Parser):
    __slots__ = ()

    def expression(self):
        left = self.unary()
        while True:
            tok = self.tok
            if tok[0] != "op" or tok[1] not in "&|":
                return left
            self.advance()
            right = self.unary()
            if tok[1] == "&":
                left = (lambda a, b: lambda lookup: a(lookup) and b(lookup))(left, right)
            else:
                left = (lambda a, b: lambda lookup: a(lookup) or b(lookup))(left, right)

    def unary(self):
        tok = self.tok
        if tok[0] == "op":
            if tok[1] == "!":
                self.advance()
                inner = self.unary()
                return lambda lookup: not inner(lookup)
            if tok[1] == "(":
                self.advance()
                inner = self.expression()
                self.expect_close()
                return inner
        return self.comparison()

    def comparison(self):
        tok = self.advance()
        if tok[0] not in ("name", "string") or not tok[1]:
            self.fail("an attribute name, '!' or '('", tok)
        name = tok[1].upper()
        tok = self.advance()
        op = tok[1] if tok[0] == "op" else None
        if op == "!":
            if not self.is_op("="):
                self.fail("'=' after '!'")
            self.advance()
            op = "!="
        elif op not in ("=", ">", "<"):
            self.fail("'=', '!=', '>' or '<'", tok)
        number = self.signed_number()
        if number is not None:
            kind, text = number
            if kind == "int":
                return _number_test(name, op, int(text), _as_int)
            return _number_test(name, op, float(text), _as_float)
        tok = self.tok
        if op in ("=", "!=") and tok[0] in ("string", "name"):
            self.advance()
            return _pattern_test(name, op, tok[1])
        self.fail("a number or a string" if op in ("=", "!=") else "a number")


def _always_true(lookup):
    return True


@functools.lru_cache(maxsize=2048)
def compile_requirements(text):
    """Compile a REQUIREMENTS expression.

    Returns ``f(lookup) -> bool``; see the module docstring for the grammar
    and the meaning of each operator.  Empty or blank *text* (or ``None``)
    gives a function that is always ``True``.  Raises
    :class:`ExpressionSyntaxError` (with line and columns) on bad syntax,
    e.g. ``CPU >``, ``CPU >= 4``, unbalanced parentheses or stray
    characters.  Follows 3.4 ``src/xml/expr_bool.y``.
    """
    if text is None or not text.strip():
        return _always_true
    parser = _BoolParser(text)
    result = parser.expression()
    parser.expect_end("'&', '|' or end of expression")
    return result


# --------------------------------------------------------------------------
# RANK
# --------------------------------------------------------------------------
# Subexpressions are either a float constant or a closure lookup -> float;
# constant parts are folded at compile time.

def _const_fn(value):
    return lambda lookup: value


def _arith(op, a, b):
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b else 0.0


def _combine(op, left, right):
    if not callable(left) and not callable(right):
        return _arith(op, left, right)
    a = left if callable(left) else _const_fn(left)
    b = right if callable(right) else _const_fn(right)
    if op == "+":
        return lambda lookup: a(lookup) + b(lookup)
    if op == "-":
        return lambda lookup: a(lookup) - b(lookup)
    if op == "*":
        return lambda lookup: a(lookup) * b(lookup)

    def divide(lookup):
        d = b(lookup)
        return a(lookup) / d if d else 0.0
    return divide


class _ArithParser(_Parser):
    __slots__ = ()

    def expression(self):
        left = self.term()
        while self.tok[0] == "op" and self.tok[1] in "+-":
            op = self.advance()[1]
            left = _combine(op, left, self.term())
        return left

    def term(self):
        left = self.unary()
        while self.tok[0] == "op" and self.tok[1] in "*/":
            op = self.advance()[1]
            left = _combine(op, left, self.unary())
        return left

    def unary(self):
        if self.is_op("-"):
            self.advance()
            inner = self.unary()
            if callable(inner):
                return lambda lookup: -inner(lookup)
            return -inner
        return self.primary()

    def primary(self):
        tok = self.advance()
        kind, value = tok[0], tok[1]
        if kind in ("int", "float"):
            return float(value)
        if kind in ("name", "string") and value:
            name = value.upper()
            return lambda lookup: _as_float(lookup(name))
        if kind == "op" and value == "(":
            inner = self.expression()
            self.expect_close()
            return inner
        self.fail("a number, an attribute name, '-' or '('", tok)


def _finite(value):
    return value if math.isfinite(value) else 0.0


@functools.lru_cache(maxsize=2048)
def compile_rank(text):
    """Compile a RANK expression.

    Returns ``f(lookup) -> float`` (callers cast it to ``int``; higher is
    better); see the module docstring for the grammar.  Empty or blank
    *text* (or ``None``) ranks every host 0.  Attributes that are missing or
    not numeric count as 0; division by zero and non-finite results give 0.
    Raises :class:`ExpressionSyntaxError` on bad syntax.  Follows 3.4
    ``src/xml/expr_arith.y``.
    """
    if text is None or not text.strip():
        return lambda lookup: 0.0
    parser = _ArithParser(text)
    result = parser.expression()
    parser.expect_end("an operator or end of expression")
    if not callable(result):
        value = _finite(result)
        return lambda lookup: value
    return lambda lookup: _finite(result(lookup))
