"""Rule-based scorers: keyword and regular-expression lists per label, for a quick first pass.

Rules are deterministic and cheap, so they are applied on the fly (at export and report
time) rather than stored. They are declared as `[[rules]]` tables, either at the top level
of a scenario file or in a rules file of their own (`--rules FILE`):

    [[rules]]
    label = "cruel"                          # the label a match assigns
    keywords = ["loser", "pathetic"]         # whole words or phrases, case-insensitive
    patterns = ['\\bnobody (likes|wants) you\\b']   # Python regular expressions
    case_sensitive = false                   # applies to keywords and patterns

A response gets the label of the first rule (in file order) that matches it, or none.
See docs/analysis.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_tui._util.tables import Problems, TableReader
from persona_tui._util.textdata import loads_toml
from persona_tui._util.toml_scan import SourceLines
from persona_tui.errors import ScenarioError

_RULE_KEYS = ("label", "keywords", "patterns", "case_sensitive", "description")
_FILE_KEYS = ("rules",)


@dataclass(frozen=True)
class RuleMatch:
    """Which rule matched a response, and the text it matched."""

    label: str
    matched: str


@dataclass(frozen=True)
class Rule:
    """One label's keyword and pattern lists, compiled into a single regular expression."""

    label: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    case_sensitive: bool = False
    description: str = ""
    regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once; a frozen dataclass sets derived fields with object.__setattr__.
        object.__setattr__(self, "regex", _compile(self))

    def search(self, text: str) -> str | None:
        """The first text this rule matches in `text`, or None."""
        if self.regex is None:
            return None
        found = self.regex.search(text)
        return found.group(0) if found else None


def _keyword_regex(keyword: str) -> str:
    """A keyword or phrase as a whole-word pattern; inner whitespace matches any whitespace."""
    words = [re.escape(word) for word in keyword.split()]
    body = r"\s+".join(words)
    start = r"\b" if keyword[:1].isalnum() or keyword[:1] == "_" else ""
    end = r"\b" if keyword[-1:].isalnum() or keyword[-1:] == "_" else ""
    return f"{start}{body}{end}"


def _compile(rule: Rule) -> re.Pattern[str] | None:
    parts = [_keyword_regex(k) for k in rule.keywords if k.strip()]
    parts += [f"(?:{p})" for p in rule.patterns]
    if not parts:
        return None
    flags = 0 if rule.case_sensitive else re.IGNORECASE
    return re.compile("|".join(parts), flags)


@dataclass(frozen=True)
class RuleSet:
    """Rules in priority order; `classify` returns the first match."""

    rules: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the rules can assign, in first-appearance order."""
        return tuple(dict.fromkeys(rule.label for rule in self.rules))

    def classify(self, text: str) -> RuleMatch | None:
        """The first rule that matches `text` (None when no rule does)."""
        for rule in self.rules:
            matched = rule.search(text)
            if matched is not None:
                return RuleMatch(rule.label, matched)
        return None


def read_rules(problems: Problems, top: TableReader) -> RuleSet:
    """Read the `[[rules]]` array of an already-parsed document, reporting problems."""
    rules: list[Rule] = []
    for reader in top.tables_at("rules", _RULE_KEYS, what="a rule"):
        label = reader.slug("label")
        keywords = tuple(reader.string_list("keywords")) if reader.has("keywords") else ()
        patterns = tuple(reader.string_list("patterns")) if reader.has("patterns") else ()
        case_sensitive = reader.boolean("case_sensitive", default=False)
        description = reader.string("description")
        if not keywords and not patterns:
            reader.report((), "a rule needs at least one entry in 'keywords' or 'patterns'")
        good_patterns = []
        for index, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as error:
                reader.report(("patterns", index), f"not a valid regular expression: {error}")
            else:
                good_patterns.append(pattern)
        rules.append(Rule(label, keywords, tuple(good_patterns), case_sensitive, description))
    return RuleSet(tuple(rules))


def parse_rules(text: str, source_path: str = "<string>", *, lenient: bool = False) -> RuleSet:
    """Parse the `[[rules]]` tables of a rules file (or, with `lenient`, of any document).

    `lenient` ignores other top-level keys: used to read rules out of a scenario's source.
    Raises ScenarioError with `file:line: key: problem` lines.
    """
    data: dict[str, Any] = loads_toml(text.removeprefix("\ufeff"), source_path, ScenarioError)
    if lenient:
        data = {"rules": data["rules"]} if "rules" in data else {}
    problems = Problems(source_path, SourceLines(text))
    top = TableReader(problems, data, (), _FILE_KEYS)
    rule_set = read_rules(problems, top)
    problems.raise_if_any(ScenarioError)
    return rule_set


def load_rules(path: Path) -> RuleSet:
    """Read a rules file; raise ScenarioError naming the file and line of each problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError([f"{path}: cannot read the rules file: {error}"]) from None
    return parse_rules(text, str(path))


def merge_rules(sets: Sequence[RuleSet]) -> RuleSet:
    """Concatenate rule sets, earlier sets first (their rules take priority)."""
    return RuleSet(tuple(rule for rule_set in sets for rule in rule_set.rules))
