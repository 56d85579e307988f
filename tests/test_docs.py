"""Generated documentation stays in step with the code it describes."""

from pipeline import config
from pipeline.errors import FAILURE_REASONS, SKIP_REASONS
from conftest import REPO


def test_readme_config_reference_is_current():
    readme = (REPO / "README.md").read_text()
    assert config.reference_markdown() in readme, (
        "README config reference is stale: regenerate it from pipeline.config.reference_markdown()")


def test_example_config_is_current_and_means_the_defaults():
    example = REPO / "scribewatch.example.yaml"
    assert example.read_text() == config.example_yaml()
    assert config.load(example, environ={}) == config.load(None, environ={})


def test_readme_lists_every_reason_code():
    readme = (REPO / "README.md").read_text()
    for reason in list(FAILURE_REASONS) + list(SKIP_REASONS):
        assert f"`{reason}`" in readme, reason


def test_make_targets_are_the_documented_two():
    makefile = (REPO / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()
