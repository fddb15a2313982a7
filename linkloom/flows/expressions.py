"""A fast, conservative reader for the templates most specs are made of.

Jinja2's lexer and parser cost about a millisecond per template, which dominates validating
thousands of specs. Most templates are text around ``{{ expression }}`` blocks built from
names, attribute and item lookups, literals, operators, filters, tests and calls. This module
parses exactly that subset with one tokenizer regex and a small recursive-descent parser, and
returns the references (as ``linkloom.flows.templates.references`` would) or ``None`` when the
template uses anything else or looks wrong in any way. ``None`` sends the caller to the full
Jinja parser, which then gives the precise error; so this reader may refuse valid templates but
must never accept one Jinja rejects (a property test checks that against Jinja).
"""

from __future__ import annotations

import re

from linkloom.flows import template_guards

ENV = template_guards.LoomEnvironment()  # parses only; templates never render here
FILTERS = frozenset(ENV.filters)
TESTS = frozenset(ENV.tests)
NOT_REFERENCES = frozenset(ENV.globals) | {"loop", "caller", "varargs", "kwargs", "self"}
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "if", "else"}) | _LITERALS

_BLOCK = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
_SYNTAX = re.compile(r"\{[{%#]")
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z0-9_.]))
    | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    | (?P<op>//|\*\*|==|!=|<=|>=|[-+*/%~<>()\[\],.|])
    )""",
    re.X,
)
_CMP = frozenset({"==", "!=", "<", ">", "<=", ">="})
_MAX_TOKENS = 200


class _Refuse(Exception):
    """Not in the subset this reader handles: let Jinja decide."""


def references(text: str) -> tuple[tuple[str, ...], ...] | None:
    """The references of ``text`` if it is in the simple subset, else ``None``."""
    found: dict[tuple[str, ...], None] = {}
    end = 0
    for match in _BLOCK.finditer(text):
        if _SYNTAX.search(text, end, match.start()):
            return None
        end = match.end()
        try:
            _Parser(match.group(2), found).parse()
        except _Refuse:
            return None
    if end == 0 or _SYNTAX.search(text, end):
        return None
    return tuple(p for p in found if p[0] not in NOT_REFERENCES)


class _Parser:
    def __init__(self, source: str, found: dict[tuple[str, ...], None]) -> None:
        self.tokens = self._tokenize(source)
        self.pos = 0
        self.found = found

    @staticmethod
    def _tokenize(source: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        while True:
            match = _TOKEN.match(source, pos)
            if match is None or match.end() == pos:
                if source[pos:].strip():
                    raise _Refuse
                break
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind)))
            pos = match.end()
            if len(tokens) > _MAX_TOKENS:
                raise _Refuse
        tokens.append(("end", ""))
        return tokens

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise _Refuse

    def is_word(self, word: str) -> bool:
        kind, value = self.peek()
        return kind == "name" and value == word

    def parse(self) -> None:
        if self.peek()[0] == "end":
            raise _Refuse  # an empty {{ }} is a Jinja error
        self.expression()
        if self.peek()[0] != "end":
            raise _Refuse

    def expression(self) -> None:
        self.or_()
        if self.is_word("if"):
            self.take()
            self.or_()
            if self.is_word("else"):
                self.take()
                self.expression()

    def or_(self) -> None:
        self.and_()
        while self.is_word("or"):
            self.take()
            self.and_()

    def and_(self) -> None:
        self.not_()
        while self.is_word("and"):
            self.take()
            self.not_()

    def not_(self) -> None:
        if self.is_word("not"):
            self.take()
            self.not_()
            return
        self.compare()

    def compare(self) -> None:
        self.arithmetic()
        while True:
            kind, value = self.peek()
            if (kind == "op" and value in _CMP) or self.is_word("in"):
                self.take()
            elif self.is_word("not") and self.tokens[self.pos + 1] == ("name", "in"):
                self.pos += 2
            else:
                return
            self.arithmetic()

    def arithmetic(self) -> None:
        self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in (
            "+",
            "-",
            "*",
            "/",
            "//",
            "%",
            "**",
            "~",
        ):
            self.take()
            self.unary()

    def unary(self) -> None:
        if self.peek() in (("op", "-"), ("op", "+")):
            self.take()
            self.unary()
            return
        self.primary()
        self.postfix()

    def primary(self) -> None:
        kind, value = self.take()
        if kind in ("number", "string"):
            return
        if kind == "op" and value in ("(", "["):
            self.sequence(")" if value == "(" else "]", allow_empty=value == "[")
            return
        if kind != "name" or (value in _KEYWORDS and value not in _LITERALS):
            raise _Refuse
        if value not in _LITERALS:
            self.chain(value)

    def chain(self, name: str) -> None:
        path = [name]
        static = True
        while True:
            kind, value = self.peek()
            if value == "." and kind == "op":
                self.take()
                kind, attr = self.take()
                if kind != "name":
                    raise _Refuse
                if static:
                    path.append(attr)
            elif value == "[" and kind == "op":
                self.take()
                kind, key = self.peek()
                if kind in ("string", "number") and self.tokens[self.pos + 1] == ("op", "]"):
                    self.pos += 2
                    if static:
                        path.append(_literal(kind, key))
                else:
                    self.expression()
                    self.expect("]")
                    static = False
            elif value == "(" and kind == "op":
                self.take()
                self.arguments()
                static = False
            else:
                break
        self.found.setdefault(tuple(path), None)

    def postfix(self) -> None:
        while True:
            if self.peek() == ("op", "|"):
                self.take()
                kind, name = self.take()
                if kind != "name" or name not in FILTERS:
                    raise _Refuse
                if self.peek() == ("op", "("):
                    self.take()
                    self.arguments()
            elif self.is_word("is"):
                self.take()
                if self.is_word("not"):
                    self.take()
                kind, name = self.take()
                if kind != "name" or name not in TESTS:
                    raise _Refuse
                if self.peek() == ("op", "("):
                    self.take()
                    self.arguments()
                    continue
                # Jinja reads a following operand as the test's argument (``is divisibleby 3``,
                # even ``is defined if``): only an operator, 'else', 'or', 'and' or an end
                # may follow a test without parentheses.
                kind, value = self.peek()
                if kind in ("name", "string", "number") and value not in ("else", "or", "and"):
                    raise _Refuse
                if kind == "op" and value in ("(", "["):
                    raise _Refuse
            else:
                return

    def arguments(self) -> None:
        """Call arguments up to ``)``: expressions and ``name=expression``."""
        if self.peek() == ("op", ")"):
            self.take()
            return
        while True:
            kind, _ = self.peek()
            if kind == "name" and self.tokens[self.pos + 1] == ("op", "="):
                raise _Refuse  # keyword arguments: rare; let Jinja read them
            self.expression()
            kind, value = self.take()
            if value == ")":
                return
            if value != "," or self.peek() == ("op", ")"):
                raise _Refuse

    def sequence(self, closing: str, *, allow_empty: bool) -> None:
        if self.peek() == ("op", closing):
            if not allow_empty:
                raise _Refuse  # () is an empty tuple in Jinja; rare enough to refuse
            self.take()
            return
        while True:
            self.expression()
            _kind, value = self.take()
            if value == closing:
                return
            if value != "," or self.peek() == ("op", closing):
                raise _Refuse


def _literal(kind: str, token: str) -> str:
    if kind == "number":
        if not token.isdigit():
            raise _Refuse
        return token
    if "\\" in token:
        raise _Refuse
    return token[1:-1]
