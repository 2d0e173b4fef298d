"""The ``xb`` fixture (tests/proctools.py): what a command prints on stderr as a process, it gives in ``err`` in-process too."""

import logging
import warnings

from xraybench.cli import plugins


def test_a_commands_warnings_and_log_records_are_in_err_as_a_process_prints_them(xb, monkeypatch):
    """pytest would take them (its warnings summary, its logging plugin), and a test of "one line"
    or "no secret in the output" would not see them. What a process would not print stays out."""

    def noisy(args) -> int:
        warnings.warn("a loud warning", UserWarning, stacklevel=1)
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)  # ignored by default outside __main__
        logging.getLogger("xb_test.noisy").warning("a logged warning")
        logging.getLogger("xb_test.noisy").info("a logged detail")  # below the last-resort handler's WARNING
        return 0

    monkeypatch.setattr(plugins, "cmd_models", noisy)
    result = xb("models")
    assert result.code == 0 and result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 3, result.err
    assert lines[0].endswith(": UserWarning: a loud warning") and __file__ in lines[0]
    assert lines[1].strip() == 'warnings.warn("a loud warning", UserWarning, stacklevel=1)'  # the source line, as Python shows it
    assert lines[2] == "a logged warning"


def test_the_call_leaves_warnings_and_logging_as_it_found_them(xb):
    def state():
        return list(warnings.filters), warnings.showwarning, list(logging.root.handlers)

    before = state()
    xb("--version")
    assert state() == before


def test_a_logger_with_handlers_of_its_own_prints_as_in_a_process(xb, monkeypatch):
    """Python's last resort speaks only for a record no handler takes: a library's NullHandler keeps it
    quiet, and a library's own stream handler prints it once (through that handler, not twice)."""
    import sys

    quiet, loud = logging.getLogger("xb_test.quiet"), logging.getLogger("xb_test.loud")
    monkeypatch.setattr(quiet, "handlers", [logging.NullHandler()])
    own = logging.StreamHandler()  # bound to stderr when the command runs, as a library's would be at import

    def noisy(args) -> int:
        own.setStream(sys.stderr)
        quiet.warning("null-handled warning")
        loud.warning("own-handler warning")
        return 0

    monkeypatch.setattr(loud, "handlers", [own])
    monkeypatch.setattr(plugins, "cmd_models", noisy)
    assert xb("models").err == "own-handler warning\n"
