"""The README and docs/ as a reader meets them: a short README whose first two code blocks are
the two commands that work on a fresh machine (the test command being the one .ci/run runs),
no reference to files a clone does not have, every relative link and image pointing at a file
(and heading) that exists, every § reference naming a numbered section of docs/faithfulness.md."""
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FAITHFULNESS = DOCS / "faithfulness.md"
FORBIDDEN = ("ORIGINAL_BEHAVIOUR", "PAPER_RESULTS", "PAPER_COMMANDS", "shared/docs")
PAGES = ("commands", "recipes", "faithfulness", "resume", "errors", "results", "structured", "performance",
         "architecture")

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SECTION_REF = re.compile(r"§\s?(\d+(?:\.\d+)*)")
NUMBERED_HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.M)


def doc_files():
    return [README, *sorted(DOCS.glob("*.md"))]


def code_blocks(text):
    return [m.group(1) for m in FENCE.finditer(text)]


def prose(text):
    """The text outside fenced blocks and inline code, where links are links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path):
    """Relative links and images of one Markdown file whose file or heading does not exist."""
    bad = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(target)
    return bad


def section_numbers(path=FAITHFULNESS):
    return set(NUMBERED_HEADING.findall(FENCE.sub("", path.read_text())))


def ci_commands():
    """(install commands, test command) of .ci/run, written as a user types them."""
    installs, tests = [], []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words[:4] == ["python3", "-m", "pip", "install"]:
            installs.append(["pip", "install", *[w for w in words[4:] if w != "-q"]])
        elif words[:3] == ["python3", "-m", "pytest"]:
            tests.append(line.strip())
    return installs, tests


def chain(block):
    """One shell line of ``a && b && c`` as its commands, each a list of words."""
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, block
    return [shlex.split(part) for part in lines[0].split("&&")]


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= 12_000, f"README.md is {size} bytes; move detail to docs/"


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    blocks = code_blocks(text)
    assert len(blocks) >= 2
    # nothing fenced comes before them, and they come before the first section heading
    assert text.index("```") < text.index("\n## ")
    assert text.index(blocks[1]) < text.index("\n## ")
    installs, tests = ci_commands()
    assert len(tests) == 1 and installs, "cannot read .ci/run"
    quick, test = chain(blocks[0]), chain(blocks[1])
    # install + quickstart: the same installs as CI minus pytest, then the quickstart
    assert quick[:-1] == [[w for w in cmd if w != "pytest"] for cmd in installs]
    assert quick[-1] == ["bash", "scripts/quickstart.sh"] and (ROOT / "scripts" / "quickstart.sh").is_file()
    # install + tests: exactly what .ci/run installs and runs
    assert test[:-1] == installs
    assert " ".join(test[-1]) == tests[0] == "python3 -m pytest -q tests"


def test_readme_keeps_its_generated_and_marked_blocks():
    text = README.read_text()
    for name in ("profiles", "small2_brief"):
        assert f"<!-- generated: {name} -->\n" in text and f"<!-- end: {name} -->" in text, name
    start, end = text.index("<!-- quickstart-output -->"), text.index("<!-- /quickstart-output -->")
    assert start < end and "```text" in text[start:end]


def test_readme_indexes_every_docs_page():
    text = README.read_text()
    for page in PAGES:
        assert (DOCS / f"{page}.md").is_file(), page
        assert f"(docs/{page}.md)" in text, page
    assert sorted(p.stem for p in DOCS.glob("*.md")) == sorted(PAGES)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_no_reference_to_files_outside_the_repository(path):
    text = path.read_text()
    found = [s for s in FORBIDDEN if s in text]
    assert not found, f"{path.name} names {found}"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_relative_links_and_images_exist(path):
    assert broken_links(path) == []


def test_section_references_resolve():
    numbers = section_numbers()
    assert {"1", "1.1", "3.2"} <= numbers
    refs = {}
    for path in doc_files():
        for n in SECTION_REF.findall(path.read_text()):
            refs.setdefault(n, set()).add(path.name)
    assert refs, "no § reference anywhere"
    missing = {n: sorted(files) for n, files in refs.items() if n not in numbers}
    assert not missing, f"§ references without a section in docs/faithfulness.md: {missing}"


def test_section_links_point_at_their_section():
    """A link written ``[§N](…faithfulness.md#anchor)`` goes to the heading numbered N."""
    headings = {}
    for line in FENCE.sub("", FAITHFULNESS.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+((\d+(?:\.\d+)*)\.?\s.*)$", line)
        if m:
            headings[m.group(2)] = slug(m.group(1))
    checked = 0
    for path in doc_files():
        for n, anchor in re.findall(r"\[§(\d+(?:\.\d+)*)\]\([^)#]*faithfulness\.md#([^)]+)\)", path.read_text()):
            assert headings.get(n) == anchor, (path.name, n, anchor)
            checked += 1
    assert checked


def test_the_checks_catch_what_they_should(tmp_path):
    """The helpers above flag a missing file, a missing heading and an unknown section."""
    (tmp_path / "a.md").write_text("# Top\n\n## 2. Two\n\n### 2.1 Sub part\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#21-sub-part) [gone](nope.md) [anchor](a.md#22-none) ![img](x.png) "
                    "`[code](ignored.md)` [web](https://example.org)\n")
    assert broken_links(page) == ["nope.md", "a.md#22-none", "x.png"]
    assert section_numbers(tmp_path / "a.md") == {"2", "2.1"}
    assert slug("5.2 `pertub_weight.py`") == "52-pertub_weightpy"
    assert chain("pip install x && python3 -m pytest -q tests") == [["pip", "install", "x"],
                                                                    ["python3", "-m", "pytest", "-q", "tests"]]
