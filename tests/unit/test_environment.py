"""What a record says about its environment: the backend's version whatever wheel brought it."""

from importlib.metadata import PackageNotFoundError

from xraybench import environment


def test_tensorflow_version_is_recorded_from_the_cpu_wheel(monkeypatch):
    installed = {"tensorflow-cpu": "2.21.0", "keras": "3.15.1"}

    def version(dist):
        if dist not in installed:
            raise PackageNotFoundError(dist)
        return installed[dist]

    monkeypatch.setattr(environment, "version", version)
    env = environment.capture("tensorflow")
    assert env["tensorflow"] == "2.21.0" and env["keras"] == "3.15.1" and env["torch"] is None
