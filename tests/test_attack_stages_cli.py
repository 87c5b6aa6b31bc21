"""The maintenance script's usage check: a wrong command line is refused with the examples, never half-run."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "attack_stages.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("attack_stages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, says", [
    ([], "the job kind is one of"),
    (["mnist"], "the job kind is one of"),
    (["mnist", "stagse", "empir", "l2", "1000"], "the job kind is one of"),
    (["mnist", "stages", "empir"], "needs 5 arguments, got 3"),
    (["mnist", "promote", "baseline"], "needs 4 arguments, got 3"),
    (["mnist", "recheck", "empir", "l2", "all"], "must be a whole number, not 'all'"),
    (["mnist", "recheck", "empir", "l2", "1000", "--chian"], "unknown option(s) --chian"),
])
def test_a_wrong_command_line_is_refused_before_any_job_starts(script, argv, says):
    with pytest.raises(SystemExit) as e:
        script.main(argv)
    assert says in str(e.value)
    assert "attack_stages.py mnist stages empir l2 1000" in str(e.value) or "unknown option" in str(e.value)


def test_help_prints_the_examples_and_good_command_lines_pass(script):
    with pytest.raises(SystemExit, match="attack_stages.py mnist promote baseline l2"):
        script.main(["--help"])
    for argv in (["mnist", "status"], ["cifar10", "labels", "--rerun=fgsm,cw"], ["mnist", "promote", "baseline", "l2"],
                 ["mnist", "recheck", "empir", "l2", "10000", "--chain"], ["mnist", "min_norm", "empir", "l2", "1000"]):
        assert script.usage(argv) is None, argv
