"""Pipeline files: what loads, and how every mistake is reported."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from plexa.core.config import format_issues, load, loads, resolve_class, validate
from plexa.core.spec import LinkSpec, OnFailure, Policy, Restart, Settings
from plexa.errors import ConfigError, ConfigIssue

HERE = os.path.dirname(os.path.abspath(__file__))
A = "actors_for_config"


@pytest.fixture(autouse=True)
def importable_test_actors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(HERE)


def write(tmp_path: Path, text: str, name: str = "pipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def issues_of(tmp_path: Path, text: str) -> list[ConfigIssue]:
    return validate(write(tmp_path, text))


def only(issues: list[ConfigIssue]) -> ConfigIssue:
    assert len(issues) == 1, format_issues(issues)
    return issues[0]


def test_a_valid_plexa_file_loads_into_the_expected_spec(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        settings: {{store_size: 1000, setup_timeout: 3, on_failure: continue}}
        actors:
          cam:  {{class: "{A}:Source", options: {{rate_hz: 5, shape: [8, 8]}}}}
          relay:
            class: {A}.Relay
            restart: on-failure
            max_restarts: 2
            restart_window: 10
            backoff: 0.5
          sink: {{class: "{A}:Sink"}}
        connections:
          cam.frames: relay.frames
          relay.frames: [sink.frames]
          relay.stats: {{to: [sink.frames], policy: latest, capacity: 4}}
        """,
        name="imaging.yaml",
    )
    spec = load(path)
    assert spec.name == "imaging"
    assert spec.source == str(path)
    assert spec.settings == Settings(
        store_size=1000, setup_timeout=3.0, on_failure=OnFailure.CONTINUE
    )
    assert list(spec.actors) == ["cam", "relay", "sink"]
    cam, relay, sink = spec.actors.values()
    assert (cam.target, cam.options, cam.outputs, cam.line) == (
        f"{A}:Source",
        {"rate_hz": 5, "shape": [8, 8]},
        ("frames",),
        3,
    )
    assert relay.target == f"{A}:Relay"
    assert (relay.restart, relay.max_restarts, relay.restart_window, relay.backoff) == (
        Restart.ON_FAILURE,
        2,
        10,
        0.5,
    )
    assert relay.inputs == ("frames", "control")
    assert sink.restart is Restart.NEVER and sink.inputs == ("frames",)
    assert spec.links == (
        LinkSpec(src="cam", src_port="frames", dst="relay", dst_port="frames"),
        LinkSpec(src="relay", src_port="frames", dst="sink", dst_port="frames"),
        LinkSpec(
            src="relay",
            src_port="stats",
            dst="sink",
            dst_port="frames",
            policy=Policy.LATEST,
            capacity=4,
        ),
    )
    assert spec.links[0].policy is Policy.BLOCK and spec.links[0].capacity == 8


def test_a_valid_improv_spelling_file_loads_with_extra_keys_as_options() -> None:
    spec = loads(
        textwrap.dedent("""
        settings: {store_size: 20000000}
        actors:
          Generator: {package: plexa.examples.minimal, class: Generator, frames: 10}
          Processor: {package: plexa.examples.minimal, class: Processor}
        connections:
          Generator.q_out: Processor.q_in
        """),
        source="minimal.yaml",
    )
    assert spec.name == "minimal"
    assert spec.settings.store_size == 20_000_000
    gen = spec.actors["Generator"]
    assert gen.target == "plexa.examples.minimal:Generator"
    assert gen.options == {"frames": 10}
    assert (gen.outputs, spec.actors["Processor"].inputs) == (("q_out",), ("q_in",))
    assert [link.name for link in spec.links] == ["Generator.q_out->Processor.q_in"]


def test_the_shipped_example_files_load() -> None:
    examples = Path(HERE).parent / "examples"
    for path in sorted(examples.glob("*.yaml")):
        assert validate(path) == [], path


def test_a_string_source_gets_a_default_name() -> None:
    spec = loads(f"actors: {{a: {{class: '{A}:Sink'}}}}")
    assert (spec.name, spec.source, spec.links) == ("pipeline", "<string>", ())


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1000", 1000),
        ("'256MB'", 256_000_000),
        ("'1GiB'", 2**30),
        ("'512k'", 512 * 1024),
        ("'1.5 MiB'", 3 * 2**19),
        ("'64 B'", 64),
    ],
)
def test_store_size_accepts_bytes_and_units(text: str, size: int) -> None:
    spec = loads(f"settings: {{store_size: {text}}}\nactors: {{a: {{class: '{A}:Sink'}}}}")
    assert spec.settings.store_size == size


@pytest.mark.parametrize("text", ["'lots'", "-5", "0", "'12 iB'", "true"])
def test_a_bad_store_size_is_reported(tmp_path: Path, text: str) -> None:
    issue = only(
        issues_of(
            tmp_path, f"settings:\n  store_size: {text}\nactors: {{a: {{class: '{A}:Sink'}}}}"
        )
    )
    assert (issue.line, issue.key) == (2, "settings.store_size")
    assert "256MB" in issue.hint


def test_an_unknown_top_level_key_names_the_line_and_suggests_the_nearest(tmp_path: Path) -> None:
    issue = only(issues_of(tmp_path, f"actors: {{a: {{class: '{A}:Sink'}}}}\nconections: {{}}\n"))
    assert (issue.line, issue.key, issue.hint) == (2, "conections", "did you mean 'connections'?")


def test_unknown_or_badly_typed_settings_are_reported(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        settings:
          setup_timout: 3
          stop_timeout: -1
          on_failure: stpo
          control: 5
        actors: {{a: {{class: '{A}:Sink'}}}}
        """,
    )
    assert [(i.line, i.key) for i in issues] == [
        (2, "settings.setup_timout"),
        (3, "settings.stop_timeout"),
        (4, "settings.on_failure"),
        (5, "settings.control"),
    ]
    assert issues[0].hint == "did you mean 'setup_timeout'?"
    assert "positive number" in issues[1].message
    assert issues[2].hint == "did you mean 'stop'?"


@pytest.mark.parametrize("text", ["name: x\n", "actors: {}\n", "actors: [a, b]\n"])
def test_actors_must_be_a_non_empty_mapping(tmp_path: Path, text: str) -> None:
    assert only(issues_of(tmp_path, text)).key == "actors"


def test_an_actor_needs_a_mapping_with_a_class(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, "actors:\n  a: {options: {}}\n  b: hello\n")
    assert [(i.line, i.key) for i in issues] == [(2, "actors.a"), (3, "actors.b")]
    assert "class" in issues[0].message


def test_an_unknown_actor_key_suggests_the_nearest(tmp_path: Path) -> None:
    issue = only(issues_of(tmp_path, f"actors:\n  a:\n    class: '{A}:Source'\n    option: {{}}\n"))
    assert (issue.line, issue.key, issue.hint) == (4, "actors.a.option", "did you mean 'options'?")


def test_a_module_that_cannot_be_imported_suggests_checking_the_path(tmp_path: Path) -> None:
    issue = only(issues_of(tmp_path, "actors:\n  a: {class: 'no_such_module_xyz:Thing'}\n"))
    assert (issue.line, issue.key) == (2, "actors.a.class")
    assert "no_such_module_xyz" in issue.message and "PYTHONPATH" in issue.hint


def test_a_missing_class_suggests_the_nearest_class_in_the_module(tmp_path: Path) -> None:
    issue = only(issues_of(tmp_path, f"actors:\n  a: {{class: '{A}:Sorce'}}\n"))
    assert (issue.line, issue.key) == (2, "actors.a.class")
    assert "has no class 'Sorce'" in issue.message
    assert issue.hint.startswith("did you mean 'Source'? actors there: ")


@pytest.mark.parametrize("name", ["NotAnActor", "helper"])
def test_a_target_that_is_not_an_actor_class_is_reported(tmp_path: Path, name: str) -> None:
    issue = only(issues_of(tmp_path, f"actors:\n  a: {{class: '{A}:{name}'}}\n"))
    assert issue.key == "actors.a.class"


def test_an_unknown_option_names_the_nearest_and_the_valid_options(tmp_path: Path) -> None:
    issue = only(
        issues_of(
            tmp_path, f"actors:\n  a:\n    class: '{A}:Source'\n    options:\n      rate: 5\n"
        )
    )
    assert (issue.line, issue.key) == (5, "actors.a.options.rate")
    assert issue.hint == "did you mean 'rate_hz'? options: rate_hz, shape"


def test_a_missing_required_option_is_reported(tmp_path: Path) -> None:
    issue = only(issues_of(tmp_path, f"actors:\n  a: {{class: '{A}:Needy'}}\n"))
    assert (issue.line, issue.key) == (2, "actors.a.options")
    assert "needs option 'path'" in issue.message


def test_an_option_of_the_wrong_type_is_reported(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        actors:
          a: {{class: '{A}:Source', options: {{rate_hz: fast, shape: 3}}}}
          b: {{class: '{A}:Source', options: {{rate_hz: 2, shape: [1, 2]}}}}
          c: {{class: '{A}:Needy', options: {{path: /tmp, verbose: 1}}}}
        """,
    )
    assert [i.key for i in issues] == [
        "actors.a.options.rate_hz",
        "actors.a.options.shape",
        "actors.c.options.verbose",
    ]
    assert "must be float, not str 'fast'" in issues[0].message


def test_setup_with_keyword_arguments_accepts_any_option() -> None:
    spec = loads(f"actors: {{a: {{class: '{A}:Open', options: {{x: 1, y: [2]}}}}}}")
    assert spec.actors["a"].options == {"x": 1, "y": [2]}


def test_restart_settings_are_checked(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        actors:
          a:
            class: '{A}:Sink'
            restart: on_failure
            max_restarts: -1
            restart_window: 0
            backoff: -0.5
        """,
    )
    assert [(i.line, i.key) for i in issues] == [
        (4, "actors.a.restart"),
        (5, "actors.a.max_restarts"),
        (6, "actors.a.restart_window"),
        (7, "actors.a.backoff"),
    ]
    assert issues[0].hint == "did you mean 'on-failure'?"


def test_an_unknown_actor_in_a_connection_names_the_line_and_suggests_the_nearest(
    tmp_path: Path,
) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        actors:
          camera: {{class: '{A}:Source'}}
          traces: {{class: '{A}:Sink'}}
        connections:
          camera.frames:
            - tracse.frames
          camra.frames: [traces.frames]
        """,
    )
    assert [(i.line, i.key, i.hint) for i in issues] == [
        (6, "connections.camera.frames", "did you mean 'traces'? actors: camera, traces"),
        (7, "connections.camra.frames", "did you mean 'camera'? actors: camera, traces"),
    ]
    assert issues[0].message == "unknown actor 'tracse'"


def test_an_unknown_port_names_the_class_and_suggests_the_nearest_port(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        actors:
          camera: {{class: '{A}:Source'}}
          sink: {{class: '{A}:Sink'}}
        connections:
          camera.frame: [sink.frames]
          camera.frames: [sink.fram]
        """,
    )
    assert [(i.line, i.key) for i in issues] == [
        (5, "connections.camera.frame"),
        (6, "connections.camera.frames"),
    ]
    assert issues[0].message == f"actor 'camera' ({A}:Source) has no output 'frame'"
    assert issues[0].hint == "did you mean 'frames'? outputs: frames"
    assert issues[1].message == f"actor 'sink' ({A}:Sink) has no input 'fram'"
    assert issues[1].hint == "did you mean 'frames'? inputs: frames"
    assert str(issues[0]).startswith(f"{tmp_path / 'pipe.yaml'}:5: connections.camera.frame: ")


def test_a_connection_must_be_written_actor_dot_port(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        actors:
          camera: {{class: '{A}:Source'}}
          sink: {{class: '{A}:Sink'}}
        connections:
          camera: [sink.frames]
          camera.frames: [sink]
          sink.frames: 5
        """,
    )
    assert [(i.line, i.key) for i in issues] == [
        (5, "connections.camera"),
        (6, "connections.camera.frames"),
        (7, "connections.sink.frames"),
        (7, "connections.sink.frames"),
    ]
    assert issues[2].message == f"actor 'sink' ({A}:Sink) has no output 'frames'"


def test_policy_capacity_and_unknown_link_keys_are_checked(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        actors:
          camera: {{class: '{A}:Source'}}
          sink: {{class: '{A}:Sink'}}
        connections:
          camera.frames:
            to: [sink.frames]
            policy: drop-oldest
            capacity: 0
            polcy: block
        """,
    )
    assert [(i.line, i.key, i.hint) for i in issues] == [
        (9, "connections.camera.frames.polcy", "did you mean 'policy'?"),
        (7, "connections.camera.frames.policy", "did you mean 'drop_oldest'?"),
        (8, "connections.camera.frames.capacity", ""),
    ]
    assert "integer >= 1" in issues[2].message


def test_a_long_form_link_needs_to(tmp_path: Path) -> None:
    text = f"actors:\n  c: {{class: '{A}:Source'}}\nconnections:\n  c.frames: {{policy: latest}}\n"
    issue = only(issues_of(tmp_path, text))
    assert (issue.line, issue.key) == (4, "connections.c.frames")


def test_a_duplicate_link_is_reported_at_the_second_one(tmp_path: Path) -> None:
    text = f"""
        actors:
          camera: {{class: '{A}:Source'}}
          sink: {{class: '{A}:Sink'}}
        connections:
          camera.frames:
            - sink.frames
            - sink.frames
        """
    issue = only(issues_of(tmp_path, text))
    assert (issue.line, issue.key) == (7, "connections.camera.frames")
    assert "duplicate link" in issue.message


def test_duplicate_yaml_keys_are_reported_at_the_second_one(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        f"""
        actors:
          camera: {{class: '{A}:Source'}}
          sink: {{class: '{A}:Sink'}}
          camera: {{class: '{A}:Sink'}}
        connections:
          camera.frames: [sink.frames]
          camera.frames: [sink.frames]
        """,
    )
    assert [(i.line, i.key, i.hint) for i in issues] == [
        (4, "actors.camera", "first defined on line 2"),
        (7, "connections.camera.frames", "first defined on line 6"),
    ]
    assert issues[0].message == "duplicate key 'camera'"


def test_merge_keys_may_be_overridden_without_a_duplicate(tmp_path: Path) -> None:
    text = f"""
        actors:
          a: &base {{class: '{A}:Source', restart: always}}
          b:
            <<: *base
            restart: never
        """
    spec = load(write(tmp_path, text))
    assert (spec.actors["a"].restart, spec.actors["b"].restart) == (Restart.ALWAYS, Restart.NEVER)


def test_fan_in_fan_out_and_cycles_are_allowed() -> None:
    spec = loads(
        textwrap.dedent(f"""
        actors:
          cam: {{class: '{A}:Source'}}
          r1: {{class: '{A}:Relay'}}
          r2: {{class: '{A}:Relay'}}
        connections:
          cam.frames: [r1.frames, r2.frames]
          r2.frames: [r1.frames]
          r1.frames: [r2.frames]
          r1.stats: [r1.control]
        """)
    )
    assert len(spec.links) == 5


def test_every_issue_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        settings: {{setup_timeout: 0}}
        actors:
          camera: {{class: '{A}:Source', options: {{rate: 5}}}}
        connections:
          camera.frames: [monitor.frames]
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert [i.line for i in caught.value.issues] == [1, 3, 5]
    assert validate(path) == list(caught.value.issues)


def test_a_yaml_syntax_error_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "actors:\n  a: {class: x\n  b: [\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    issue = caught.value.issues[0]
    assert issue.line is not None and issue.line >= 2
    assert "YAML syntax error" in issue.message


@pytest.mark.parametrize("text", ["", "just a string\n", "!!python/object:os.system {}\n"])
def test_a_file_that_is_not_a_mapping_is_reported(tmp_path: Path, text: str) -> None:
    issue = only(issues_of(tmp_path, text))
    assert issue.line == 1


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "nope.yaml")
    issue = only(list(caught.value.issues))
    assert issue.line is None and "cannot read" in issue.message
    assert validate(tmp_path / "nope.yaml") == [issue]


def test_format_issues_lists_each_issue_then_a_count() -> None:
    issues = [
        ConfigIssue("bad.yaml", 7, "connections.camera.frame", "has no output 'frame'", "hint"),
        ConfigIssue("bad.yaml", None, "actors", "'actors' is missing"),
    ]
    assert format_issues(issues) == (
        "bad.yaml:7: connections.camera.frame: has no output 'frame' (hint)\n"
        "bad.yaml: actors: 'actors' is missing\n"
        "2 errors in bad.yaml"
    )
    assert format_issues(issues[:1]).endswith("\n1 error in bad.yaml")


def test_resolve_class_accepts_both_spellings_and_explains_failures() -> None:
    from actors_for_config import Source

    assert resolve_class(f"{A}:Source") is Source
    assert resolve_class(f"{A}.Source") is Source
    with pytest.raises(ImportError, match="PYTHONPATH"):
        resolve_class("no_such_module_xyz:Thing")
    with pytest.raises(AttributeError, match="did you mean 'Source'"):
        resolve_class(f"{A}:Sourc")
    with pytest.raises(ImportError, match="not a class path"):
        resolve_class("Source")
