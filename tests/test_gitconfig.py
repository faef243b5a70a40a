"""Git's config syntax (reftable.gitconfig): values checked against ``git config -f``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs
from support.fixtures import extract_repo, load_repo_expected

from reftable.errors import ConfigError, ReftableError
from reftable.gitconfig import GitConfig, SharedRepository, canonical_key, parse_bool

# (config text, key, expected value of `git config --get key`; None = unset)
SNIPPETS = [
    ("[core]\n\tbare = false\n", "core.bare", "false"),
    ("[Core]\n\tBare = true\n", "core.BARE", "true"),
    ("[a]\nk\n", "a.k", ""),  # no '=': boolean true, printed empty
    ("[a]\nk =\n", "a.k", ""),
    ("[a]\nk = x\\\\\"y\"  z ;c\n", "a.k", "x\\y  z"),
    ("[a]\nk = \"  keep ; # inside  \"  \n", "a.k", "  keep ; # inside  "),
    ("[a]\nk = one \\\n two\n", "a.k", "one  two"),
    ("[a]\nk = \"a\\tb\\nc\\bd\\\\e\\\"f\"\n", "a.k", "a\tb\nc\bd\\e\"f"),
    ("[a]\nk = v # comment\n", "a.k", "v"),
    ("[a]\nk = v; comment\n", "a.k", "v"),
    ("[a]\n\tk\t=\tspaced   inner   words\t\n", "a.k", "spaced   inner   words"),
    ("[a]\nk = 1\nk = 2\n", "a.k", "2"),
    ("[a \"Sub\"]\nk = 1\n", "a.Sub.k", "1"),
    ("[a \"Sub\"]\nk = 1\n", "a.sub.k", None),  # subsections are case-sensitive
    ("[A.SUB]\nk = 2\n", "a.sub.k", "2"),  # the deprecated form is lower-cased
    ("[A.SUB]\nk = 2\n", "a.SUB.k", None),
    ("[a \"x\\\"y\\\\z\\q\"]\nk = 3\n", "a.x\"y\\zq.k", "3"),
    ("[a \"dots.in.sub\"]\nk = 4\n", "a.dots.in.sub.k", "4"),
    ("; only a comment\n# another\n", "a.k", None),
    ("[a]\nk = no newline at end", "a.k", "no newline at end"),
    ("[a]\r\nk = crlf\r\n", "a.k", "crlf"),
    ("\ufeff[a]\nk = bom\n", "a.k", "bom"),
    ("[a] k = same line\n", "a.k", "same line"),
    ("[a]\nk-1 = dash\n", "a.k-1", "dash"),
]

BAD_SNIPPETS = [
    ("[a]\nk ; comment\n", 2),  # after a bare key only end of line may follow
    ("[a]\nk = \"open quote\n", 2),
    ("[a]\nk = bad \\x escape\n", 2),
    ("[a\n", 1),
    ("[]\nk = 1\n", 1),
    ("[a \"sub]\nk = 1\n", 1),
    ("[a \"sub\" ]\n", 1),
    ("[a b]\n", 1),
    ("[a_b]\n", 1),
    ("[a]\n1k = v\n", 2),
    ("[a]\nk_x = v\n", 2),
    ("[ok]\nk = 1\n[a]\n=v\n", 4),
]


@pytest.mark.parametrize("text,key,expected", SNIPPETS)
def test_config_values(text, key, expected):
    assert GitConfig.parse(text).get(key) == expected


@pytest.mark.parametrize("text,line", BAD_SNIPPETS)
def test_bad_syntax_names_the_line(text, line):
    with pytest.raises(ConfigError) as ei:
        GitConfig.parse(text, "cfg")
    assert isinstance(ei.value, ReftableError)
    assert (ei.value.path, ei.value.line) == ("cfg", line)


def test_multi_valued_and_bare_keys():
    cfg = GitConfig.parse("[r]\nfetch = a\nfetch\n[r]\nfetch = c\n")
    assert cfg.get_all("r.fetch") == ["a", "", "c"]
    assert cfg.get("r.fetch") == "c"
    assert cfg.get_all("r.none") == []
    entry = cfg.get_entry("R.Fetch")
    assert entry is not None and entry.line == 5


@pytest.mark.parametrize("value,expected", [
    (None, True), ("", False), ("true", True), ("YES", True), ("On", True), ("1", True),
    ("false", False), ("no", False), ("OFF", False), ("0", False), ("2", True),
    ("-1", True), ("0x0", False), ("1k", True),
])
def test_booleans(value, expected):
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", "tru", "truee", "1.0", "2g5"])
def test_bad_booleans(value):
    cfg = GitConfig.parse(f"[a]\nb = {value}\n", "f")
    with pytest.raises(ConfigError, match="bad boolean") as ei:
        cfg.get_bool("a.b", True)
    assert ei.value.line == 2


@pytest.mark.parametrize("value,expected", [
    ("0", 0), ("42", 42), ("-7", -7), ("+7", 7), ("010", 8), ("0x1f", 31), ("0X1F", 31),
    ("1k", 1024), ("2K", 2048), ("3m", 3 << 20), ("1g", 1 << 30), ("0x10k", 16384),
    ("  5", 5), ("2147483647", 2**31 - 1), ("-2147483648", -(2**31)), ("-2g", -(2**31)),
    ("1048575k", 1048575 * 1024),
])
def test_integers(value, expected):
    assert GitConfig.parse(f"[a]\nn = {value}\n").get_int("a.n", 0) == expected


@pytest.mark.parametrize("value,why", [
    ("2147483648", "out of range"), ("2g", "out of range"), ("-2147483649", "out of range"),
    ("2097152k", "out of range"), ("99999999999999999999", "out of range"),
    ("1kb", "invalid unit"), ("1.5", "invalid unit"), ("08", "invalid unit"),
    ("x", "invalid unit"), ("", "invalid unit"), ("1 k", "invalid unit"),
])
def test_bad_integers(value, why):
    cfg = GitConfig.parse(f"[a]\nn = {value}\n", "f")
    with pytest.raises(ConfigError, match=why) as ei:
        cfg.get_int("a.n", 0)
    assert (ei.value.path, ei.value.line) == ("f", 2)


def test_other_integer_widths():
    cfg = GitConfig.parse("[a]\nbig = 8g\nneg = -1\nhuge = 16777216k\n")
    assert cfg.get_int64("a.big", 0) == 8 << 30
    assert cfg.get_ulong("a.big", 0) == 8 << 30
    assert cfg.get_ulong("a.huge", 0) == 1 << 34
    with pytest.raises(ConfigError, match="invalid unit"):
        cfg.get_ulong("a.neg", 0)  # no sign for unsigned values, as Git
    with pytest.raises(ConfigError, match="invalid unit"):
        GitConfig.parse("[a]\nb\n").get_int("a.b", 0)  # no value is no number
    assert cfg.get_int("a.missing", 7) == 7


def test_keys_are_canonical():
    assert canonical_key("Core.LogAllRefUpdates") == "core.logallrefupdates"
    assert canonical_key("Remote.My.Origin.URL") == "remote.My.Origin.url"
    for bad in ("nodot", ".a", "a.", "a.1b", "a_b.c", "a.b.c_d"):
        with pytest.raises(ConfigError):
            canonical_key(bad)


def test_later_files_override_earlier_and_missing_files_are_skipped(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("[x]\nk = from-a\nonly-a = 1\n")
    b.write_text("[x]\nk = from-b\n")
    cfg = GitConfig.read([str(a), str(tmp_path / "missing"), str(b)])
    assert cfg.get("x.k") == "from-b"
    assert cfg.get("x.only-a") == "1"
    assert cfg.get_all("x.k") == ["from-a", "from-b"]


def test_includes(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "inc").write_text("[x]\nk = from-home\n")
    (tmp_path / "sub" / "inner").write_text("[x]\nk = inner\nh = 1\n")
    main = tmp_path / "config"
    main.write_text("[x]\nk = before\n[include]\npath = sub/inner\npath = nothing-here\n"
                    "[x]\nafter = 1\n[include]\npath = ~/inc\n"
                    "[includeIf \"gitdir:/elsewhere/\"]\npath = sub/inner\n")
    cfg = GitConfig.read([str(main)])
    assert cfg.get_all("x.k") == ["before", "inner", "from-home"]
    assert cfg.get("x.h") == "1"
    # an include's entries come where the include is: a later value still wins
    (tmp_path / "late").write_text("[include]\npath = sub/inner\n[x]\nk = last\n")
    assert GitConfig.read([str(tmp_path / "late")]).get("x.k") == "last"


def test_include_depth_is_limited(tmp_path):
    (tmp_path / "loop").write_text("[include]\npath = loop\n")
    with pytest.raises(ConfigError, match="include depth"):
        GitConfig.read([str(tmp_path / "loop")])
    for i in range(10):
        (tmp_path / f"c{i}").write_text(f"[include]\npath = c{i + 1}\n")
    (tmp_path / "c10").write_text("[x]\ndeep = yes\n")
    assert GitConfig.read([str(tmp_path / "c0")]).get("x.deep") == "yes"


def test_relative_include_needs_a_file():
    with pytest.raises(ConfigError, match="relative config includes"):
        GitConfig.parse("[include]\npath = rel\n")


def test_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    cfg = GitConfig.parse("[a]\np = ~/x/y\nq = /abs\n"
                          f"o = :(optional){tmp_path}/missing\nbare\n")
    assert cfg.get_path("a.p") == "/home/someone/x/y"
    assert cfg.get_path("a.q") == "/abs"
    assert cfg.get_path("a.o") is None
    assert cfg.get_path("a.unset") is None
    with pytest.raises(ConfigError):
        cfg.get_path("a.bare")


def test_overrides():
    base = GitConfig.parse("[core]\nbare = true\nlogAllRefUpdates = false\n")
    cfg = base.with_overrides(["core.bare=false", "core.logallrefupdates",
                               ("Sub.Sec.Key", "v")])
    assert cfg.get_bool("core.bare", True) is False
    assert cfg.get_bool("core.logAllRefUpdates", False) is True
    assert cfg.get("sub.Sec.key") == "v"
    assert base.get("core.bare") == "true"  # the base is unchanged
    with pytest.raises(ConfigError):
        base.with_overrides(["=x"])
    with pytest.raises(ConfigError):
        base.with_overrides(["nosection=x"])


def test_environment_overrides():
    env = {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "a.one", "GIT_CONFIG_VALUE_0": "1",
        "GIT_CONFIG_KEY_1": "a.two", "GIT_CONFIG_VALUE_1": "from-count",
        # what `git -c a.two=x -c a.three -c "a.four=it's"` passes on (new style),
        # and the old style 'key=value'
        "GIT_CONFIG_PARAMETERS": "'a.two'='x' 'a.three'= 'a.four'='it'\\''s' 'a.Five=5'",
    }
    cfg = GitConfig.from_environ(env, GitConfig.parse("[a]\none = 0\n"))
    assert cfg.get("a.one") == "1"
    assert cfg.get("a.two") == "x"  # parameters come after the counted pairs
    assert cfg.get_all("a.two") == ["from-count", "x"]
    assert cfg.get("a.three") == "" and cfg.get_bool("a.three", False) is True
    assert cfg.get("a.four") == "it's"
    assert cfg.get("a.five") == "5"
    assert GitConfig.from_environ({}).entries == ()
    for bad in ({"GIT_CONFIG_COUNT": "x"}, {"GIT_CONFIG_COUNT": "1"},
                {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "a.b"},
                {"GIT_CONFIG_PARAMETERS": "a.b=c"},
                {"GIT_CONFIG_PARAMETERS": "'a.b'x"},
                {"GIT_CONFIG_PARAMETERS": "'a.b'='c'x"}):
        with pytest.raises(ConfigError):
            GitConfig.from_environ(bad)


_keychars = hs.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=8)
_values = hs.text(alphabet=hs.characters(blacklist_categories=("Cs",),
                                         blacklist_characters="\0"), max_size=40)


def _quote(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + out.replace("\t", "\\t").replace("\b", "\\b") + '"'


@given(section=_keychars.map(lambda s: "s" + s), sub=_values, name=_keychars,
       value=_values)
def test_written_values_read_back(section, sub, name, value):
    """Whatever a writer quotes the way ``git config`` does comes back unchanged."""
    sub_q = sub.replace("\\", "\\\\").replace('"', '\\"')
    if "\n" in sub:
        return  # Git cannot write a subsection with a newline
    text = f'[{section} "{sub_q}"]\n\tk{name} = {_quote(value)}\n'
    assert GitConfig.parse(text).get(f"{section}.{sub}.k{name}") == value


# -- core.sharedRepository -----------------------------------------------------------

@pytest.mark.parametrize("value,internal", [
    (None, 0o660), ("group", 0o660), ("true", 0o660), ("1", 0o660), ("umask", 0),
    ("false", 0), ("0", 0), ("", 0), ("all", 0o664), ("world", 0o664),
    ("everybody", 0o664), ("2", 0o664), ("0640", -0o640), ("0660", -0o660),
    ("0666", -0o666), ("0777", -0o666), ("600", -0o600),
])
def test_shared_repository_values(value, internal):
    assert SharedRepository.parse(value).value == internal


@pytest.mark.parametrize("value", ["0440", "0200", "bogus", "Group"])
def test_bad_shared_repository_values(value):
    with pytest.raises(ConfigError):
        SharedRepository.parse(value)


def test_shared_repository_from_config():
    assert SharedRepository.from_config(GitConfig()).value == 0
    cfg = GitConfig.parse("[core]\n\tsharedRepository = 0440\n", "config")
    with pytest.raises(ConfigError) as ei:
        SharedRepository.from_config(cfg)
    assert (ei.value.path, ei.value.line) == ("config", 2)


def test_shared_perms_fixture(tmp_path):
    """The modes Git gives the reftable directory, tables.list and tables under each
    case's core.sharedRepository and umask (fixture ``shared-perms``)."""
    d = load_repo_expected("shared-perms")
    extract_repo("shared-perms", tmp_path)
    assert d["umask_at_init"] == "0022"
    for folder, case in d["cases"].items():
        cfg = GitConfig.read([str(tmp_path / folder / ".git" / "config")])
        assert cfg.get("core.sharedRepository") == case["core_sharedRepository"]
        shared = SharedRepository.from_config(cfg)
        at_init = case["modes_in_tar"]
        assert f"{shared.dir_mode(0o022):04o}" == at_init["reftable_dir"]
        assert f"{shared.file_mode(0o666, 0o022):04o}" == at_init["tables_list"]
        for umask, after in case["after_writes"].items():
            mask = int(umask, 8)
            # the directory was made at init; files are rewritten under the new umask
            assert after["reftable_dir"] == at_init["reftable_dir"]
            assert f"{shared.file_mode(0o666, mask):04o}" == after["tables_list"]
            assert {f"{shared.file_mode(0o666, mask):04o}"} == set(after["tables"])


@pytest.mark.parametrize("value,umask,file,dir_", [
    ("umask", 0o077, 0o600, 0o700), ("group", 0o077, 0o660, 0o2770),
    ("group", 0o022, 0o664, 0o2775), ("all", 0o077, 0o664, 0o2775),
    ("0640", 0o002, 0o640, 0o2750), ("0600", 0o022, 0o600, 0o700),
    ("0604", 0o022, 0o604, 0o705),
])
def test_shared_modes(value, umask, file, dir_):
    s = SharedRepository.parse(value)
    assert s.file_mode(0o666, umask) == file
    assert s.dir_mode(umask) == dir_
    # read-only and executable files (Git's calc_shared_perm rules)
    if s.value:
        assert s.file_mode(0o444, umask) & 0o222 == 0
        assert s.file_mode(0o755, umask) & 0o111 == ((file & 0o444) >> 2 | 0o100)
