"""Tests for nebtwist.expr (REQUIREMENTS / RANK, OpenNebula 3.4 semantics)."""

from twisted.trial import unittest

from nebtwist.expr import (ExpressionSyntaxError, compile_rank,
                           compile_requirements)

HOST = {
    "HOSTNAME": "host01.example.org",
    "HYPERVISOR": "kvm",
    "ARCH": "x86_64",
    "FREECPU": "75",
    "TOTALCPU": "400",
    "FREEMEMORY": "2048",
    "RUNNING_VMS": "3",
    "CPUSPEED": "2400.5",
    "LOAD": "0.25",
    "EMPTY": "",
    "TEXT": "abc",
    "PARTIAL": "12abc",
    "NEGATIVE": "-5",
    "SPACED": "  7 ",
}


def lookup(name):
    return HOST.get(name)


def req(text, lk=lookup):
    return compile_requirements(text)(lk)


def rank(text, lk=lookup):
    return compile_rank(text)(lk)


class SeedExampleTests(unittest.TestCase):

    def test_hostname_equal(self):
        self.assertTrue(req('HOSTNAME = "ec2"', {"HOSTNAME": "ec2"}.get))
        self.assertFalse(req('HOSTNAME = "ec2"', {"HOSTNAME": "ec2-b"}.get))
        self.assertFalse(req('HOSTNAME = "ec2"'))

    def test_hostname_wildcard(self):
        self.assertTrue(req('HOSTNAME = "host0*"'))
        self.assertTrue(req('HOSTNAME = "host0*"', {"HOSTNAME": "host0"}.get))
        self.assertFalse(req('HOSTNAME = "host0*"', {"HOSTNAME": "host10"}.get))

    def test_freecpu_and_hypervisor(self):
        text = 'FREECPU > 50 & HYPERVISOR = "kvm"'
        self.assertTrue(req(text))
        self.assertFalse(req(text, {"FREECPU": "50", "HYPERVISOR": "kvm"}.get))
        self.assertFalse(req(text, {"FREECPU": "80", "HYPERVISOR": "xen"}.get))

    def test_rank_examples(self):
        self.assertEqual(rank("FREECPU"), 75.0)
        self.assertEqual(rank("- RUNNING_VMS"), -3.0)
        self.assertEqual(rank("FREEMEMORY / 1024 + 2 * FREECPU"), 152.0)
        self.assertIsInstance(rank("FREECPU"), float)


class RequirementsOperatorTests(unittest.TestCase):

    def test_integer_comparisons(self):
        self.assertTrue(req("FREECPU = 75"))
        self.assertFalse(req("FREECPU = 74"))
        self.assertTrue(req("FREECPU != 74"))
        self.assertFalse(req("FREECPU != 75"))
        self.assertTrue(req("FREECPU > 74"))
        self.assertFalse(req("FREECPU > 75"))
        self.assertTrue(req("FREECPU < 76"))
        self.assertFalse(req("FREECPU < 75"))

    def test_not_equal_written_as_two_tokens(self):
        self.assertTrue(req("FREECPU ! = 74"))
        self.assertTrue(req("FREECPU!=74"))

    def test_float_comparisons(self):
        self.assertTrue(req("LOAD = 0.25"))
        self.assertTrue(req("LOAD != 0.5"))
        self.assertTrue(req("LOAD > 0.1"))
        self.assertTrue(req("LOAD < 0.3"))
        self.assertFalse(req("LOAD > 0.25"))
        self.assertTrue(req("CPUSPEED > 2400.1"))
        self.assertTrue(req("FREECPU = 75.0"))

    def test_integer_literal_reads_leading_integer(self):
        # like C++ "istream >> int": "2400.5" reads as 2400
        self.assertTrue(req("CPUSPEED = 2400"))
        self.assertFalse(req("CPUSPEED > 2400"))
        self.assertTrue(req("PARTIAL = 12"))
        self.assertTrue(req("SPACED = 7"))
        self.assertTrue(req("NEGATIVE < 0"))

    def test_negative_literals(self):
        self.assertTrue(req("NEGATIVE = -5"))
        self.assertTrue(req("NEGATIVE > -6"))
        self.assertTrue(req("NEGATIVE < -4.5"))

    def test_missing_or_non_numeric_is_zero(self):
        self.assertTrue(req("MISSING = 0"))
        self.assertTrue(req("MISSING < 1"))
        self.assertFalse(req("MISSING > 0"))
        self.assertTrue(req("TEXT = 0"))
        self.assertTrue(req("EMPTY = 0"))
        self.assertTrue(req("MISSING = 0.0"))
        self.assertTrue(req("TEXT != 1.5"))

    def test_string_patterns(self):
        self.assertTrue(req('HYPERVISOR = "kvm"'))
        self.assertFalse(req('HYPERVISOR = "KVM"'))          # case-sensitive
        self.assertTrue(req('HYPERVISOR != "xen"'))
        self.assertFalse(req('HYPERVISOR != "kvm"'))
        self.assertTrue(req('ARCH = "x86_?4"'))
        self.assertTrue(req('ARCH = "x86_[56]4"'))
        self.assertFalse(req('ARCH = "x86_[!6]4"'))
        self.assertTrue(req('HOSTNAME = "*.example.org"'))
        self.assertTrue(req('HOSTNAME = "*"'))
        self.assertFalse(req('HOSTNAME = "host01"'))         # whole-string match
        self.assertTrue(req('HOSTNAME != "*.example.com"'))
        self.assertTrue(req('HOSTNAME = "host01.example.org"'))
        self.assertFalse(req('HOSTNAME = "host01?example?org?"'))
        self.assertTrue(req('HOSTNAME = "host01?example?org"'))
        self.assertTrue(req('TEXT = "a(c"', {"TEXT": "a(c"}.get))   # no regex leaks

    def test_bare_word_pattern(self):
        # a name on the right is a string, as in 3.4's lexer
        self.assertTrue(req("HYPERVISOR = kvm"))
        self.assertFalse(req("HYPERVISOR != kvm"))

    def test_quoted_attribute_name(self):
        self.assertTrue(req('"HYPERVISOR" = "kvm"'))
        self.assertTrue(req('"freecpu" > 1'))

    def test_missing_or_empty_attribute_and_patterns(self):
        # 3.4 expr_bool.y: a missing or empty attribute fails both = and !=
        self.assertFalse(req('MISSING = "*"'))
        self.assertFalse(req('MISSING != "*"'))
        self.assertFalse(req('EMPTY = "*"'))
        self.assertFalse(req('EMPTY != "x"'))
        self.assertFalse(req('MISSING = ""'))
        self.assertFalse(req('MISSING != ""'))
        self.assertFalse(req('HYPERVISOR = ""'))
        self.assertTrue(req('HYPERVISOR != ""'))

    def test_names_are_uppercased_for_lookup(self):
        seen = []

        def lk(name):
            seen.append(name)
            return "1"
        self.assertTrue(req("freeCpu = 1 & arch = 1", lk))
        self.assertEqual(seen, ["FREECPU", "ARCH"])

    def test_and_or_not(self):
        self.assertTrue(req("FREECPU = 75 & RUNNING_VMS = 3"))
        self.assertFalse(req("FREECPU = 75 & RUNNING_VMS = 4"))
        self.assertTrue(req("FREECPU = 1 | RUNNING_VMS = 3"))
        self.assertFalse(req("FREECPU = 1 | RUNNING_VMS = 4"))
        self.assertFalse(req("!FREECPU = 75"))
        self.assertTrue(req("! FREECPU = 1"))
        self.assertTrue(req("!!FREECPU = 75"))
        self.assertTrue(req("(FREECPU = 75)"))
        self.assertTrue(req("((FREECPU = 75))"))

    def test_same_precedence_left_assoc(self):
        # A=1 | B=1 & C=1  is  (A=1 | B=1) & C=1
        f = compile_requirements("A=1 | B=1 & C=1")
        self.assertFalse(f({"A": "1", "B": "0", "C": "0"}.get))
        self.assertTrue(f({"A": "1", "B": "0", "C": "1"}.get))
        # A=1 & B=1 | C=1  is  (A=1 & B=1) | C=1
        g = compile_requirements("A=1 & B=1 | C=1")
        self.assertTrue(g({"A": "0", "B": "0", "C": "1"}.get))
        # parentheses override
        h = compile_requirements("A=1 | (B=1 & C=1)")
        self.assertTrue(h({"A": "1", "B": "0", "C": "0"}.get))

    def test_not_binds_to_the_next_operand(self):
        # !A=1 & B=1  is  (!A=1) & B=1
        f = compile_requirements("!A=1 & B=1")
        self.assertTrue(f({"A": "0", "B": "1"}.get))
        self.assertFalse(f({"A": "1", "B": "0"}.get))
        g = compile_requirements("!(A=1 & B=1)")
        self.assertTrue(g({"A": "1", "B": "0"}.get))

    def test_empty_is_true(self):
        for text in ("", "   ", "\n\t", None):
            self.assertTrue(compile_requirements(text)(lookup))

    def test_multiline_and_blanks(self):
        self.assertTrue(req('FREECPU > 50 &\n  HYPERVISOR = "kvm"'))

    def test_compiled_once_cached(self):
        self.assertIs(compile_requirements("FREECPU > 1"),
                      compile_requirements("FREECPU > 1"))

    def test_many_evaluations(self):
        f = compile_requirements('FREECPU > 50 & HYPERVISOR = "kv*" | ARCH = "i686"')
        hosts = [{"FREECPU": str(i), "HYPERVISOR": "kvm", "ARCH": "x86_64"}
                 for i in range(100)]
        self.assertEqual(sum(f(h.get) for h in hosts), 49)


class RequirementsSyntaxErrorTests(unittest.TestCase):

    def assertError(self, text, column, contains=None, line=1):
        e = self.assertRaises(ExpressionSyntaxError, compile_requirements, text)
        self.assertIsInstance(e, ValueError)
        self.assertEqual((e.line, e.column), (line, column), str(e))
        self.assertIn("columns %d:" % column, str(e))
        self.assertEqual(e.expression, text)
        if contains:
            self.assertIn(contains, str(e))
        return e

    def test_missing_operand(self):
        self.assertError("CPU >", 6, "unexpected end of expression, expecting a number")
        self.assertError("CPU =", 6, "expecting a number or a string")

    def test_no_greater_equal(self):
        self.assertError("CPU >= 4", 6, "unexpected '='")
        self.assertError("CPU <= 4", 6, "unexpected '='")
        self.assertError("CPU == 4", 6)

    def test_string_with_order_operator(self):
        self.assertError('HOSTNAME > "a"', 12, "expecting a number")

    def test_unbalanced_parentheses(self):
        self.assertError("(CPU > 4", 9, "expecting ')'")
        self.assertError("CPU > 4)", 8, "')'")
        self.assertError("((CPU > 4)", 11)
        self.assertError("()", 2)

    def test_stray_characters(self):
        self.assertError("CPU > 4 @ 5", 9, "'@'")
        self.assertError("CPU > 4.", 8, "'.'")
        self.assertError("CPU . 4", 5)
        self.assertError("CPU > 4 ; A = 1", 9)
        self.assertError("CPU + 4", 5, "unexpected '+'")

    def test_bad_structure(self):
        self.assertError("CPU", 4, "expecting '=', '!=', '>' or '<'")
        self.assertError("4 < CPU", 1, "expecting an attribute name")
        self.assertError("CPU > 4 HOST = 1", 9, "expecting '&', '|' or end")
        self.assertError("CPU > 4 &", 10)
        self.assertError("& CPU > 4", 1)
        self.assertError("CPU ! 4", 7, "'='")
        self.assertError("CPU > - 4", 7)            # '-' must touch the number
        self.assertError('"" = 1', 1)

    def test_unterminated_string(self):
        self.assertError('HOSTNAME = "ec2', 12, "unterminated")

    def test_position_on_later_line(self):
        e = self.assertError("CPU > 4 &\n  MEM >", 8, line=2)
        self.assertTrue(str(e).endswith("at line 2, columns 8:8"))

    def test_token_width(self):
        e = self.assertError("CPU > 4 HOSTNAME", 9)
        self.assertEqual(e.end_column, 16)


class RankTests(unittest.TestCase):

    def test_literals(self):
        self.assertEqual(rank("42"), 42.0)
        self.assertEqual(rank("1.5"), 1.5)
        self.assertEqual(rank("-1.5"), -1.5)

    def test_each_operator(self):
        self.assertEqual(rank("FREECPU + 5"), 80.0)
        self.assertEqual(rank("FREECPU - 5"), 70.0)
        self.assertEqual(rank("FREECPU * 2"), 150.0)
        self.assertEqual(rank("FREECPU / 2"), 37.5)
        self.assertEqual(rank("-FREECPU"), -75.0)
        self.assertEqual(rank("(FREECPU)"), 75.0)

    def test_precedence(self):
        self.assertEqual(rank("2 + 3 * 4"), 14.0)
        self.assertEqual(rank("(2 + 3) * 4"), 20.0)
        self.assertEqual(rank("10 - 4 - 3"), 3.0)          # left-assoc
        self.assertEqual(rank("64 / 4 / 2"), 8.0)
        self.assertEqual(rank("2 * 3 + 4 * 5"), 26.0)
        self.assertEqual(rank("- 2 * 3"), -6.0)
        self.assertEqual(rank("2 * - 3"), -6.0)
        self.assertEqual(rank("- - 3"), 3.0)
        self.assertEqual(rank("10 - -3"), 13.0)
        self.assertEqual(rank("-(2 + 3) * 2"), -10.0)

    def test_minus_touching_a_number(self):
        self.assertEqual(rank("FREECPU-1"), 74.0)
        self.assertEqual(rank("FREECPU -1"), 74.0)
        self.assertEqual(rank("3-1"), 2.0)

    def test_attributes(self):
        self.assertEqual(rank("CPUSPEED"), 2400.5)
        self.assertEqual(rank("MISSING"), 0.0)
        self.assertEqual(rank("TEXT + 1"), 1.0)
        self.assertEqual(rank("PARTIAL"), 12.0)
        self.assertEqual(rank("SPACED"), 7.0)
        self.assertEqual(rank("NEGATIVE"), -5.0)
        self.assertEqual(rank('"FREECPU" * 2'), 150.0)
        self.assertEqual(rank("freecpu"), 75.0)
        self.assertEqual(rank("X", {"X": "1e3"}.get), 1000.0)

    def test_division_by_zero(self):
        self.assertEqual(rank("FREECPU / 0"), 0.0)
        self.assertEqual(rank("FREECPU / MISSING"), 0.0)
        self.assertEqual(rank("1 / 0 + 5"), 5.0)

    def test_non_finite_results(self):
        self.assertEqual(rank("X * X", {"X": "1e200"}.get), 0.0)
        self.assertEqual(rank("X", {"X": "1e999"}.get), 0.0)

    def test_empty(self):
        for text in ("", "  ", None):
            self.assertEqual(compile_rank(text)(lookup), 0.0)

    def test_constant_expression(self):
        f = compile_rank("(1 + 2) * 3")
        self.assertEqual(f(lambda name: self.fail("no lookup expected")), 9.0)

    def test_int_cast_by_callers(self):
        self.assertEqual(int(rank("FREEMEMORY / 1000")), 2)

    def test_syntax_errors(self):
        for text, column in (("FREECPU +", 10), ("* 2", 1), ("(FREECPU", 9),
                             ("FREECPU)", 8), ("FREECPU 2", 9), ("2 ^ 3", 3),
                             ("FREECPU > 1", 9), ("FREECPU & 1", 9),
                             ("FREECPU @", 9), ("1.", 2), ('""', 1),
                             ("()", 2), ('"ab', 1)):
            e = self.assertRaises(ExpressionSyntaxError, compile_rank, text)
            self.assertEqual(e.column, column, "%r: %s" % (text, e))
            self.assertIn("at line 1, columns %d:" % column, str(e))
