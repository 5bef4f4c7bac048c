"""`congeal view` exposes no more than it must: no file outside viser's root, loopback unless --allow-remote, no
share link, photo names never rendered as Markdown (viser's Markdown is MDX: `{...}` runs as JavaScript).

The traversal request below is built so that a server which joins the URL path to its root without removing `..`
serves the secret file: `(root / relpath).resolve() == secret` is asserted first. viser 1.0.x's HTTP handler did
exactly that join (issue 31), so on 1.0.x this test gets 200 and the secret; viser >= 1.1.1 (what setup.py requires)
refuses `..` segments. Before issue 31, `--host 0.0.0.0` was served without a word, a client could ask viser for a
public share link, and the picked photo's name went into a Markdown element (`**{photo}** at ...`).
"""
import http.client
import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("viser") is None,
                                reason="`congeal view` needs the [viewer] extra (pip install viser)")


def cli(*argv) -> int:
    from congeal.cli import main

    return main([str(a) for a in argv])


def _get(port: int, path: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", path)  # http.client sends the path as given: no normalisation of `..`
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_for_server(port: int, timeout: float = 600.0) -> None:
    """Until the viewer answers HTTP (a bare connect-and-close would make viser log a failed handshake)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            _get(port, "/")
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no viewer answers on port {port}")


def test_loopback_rule():
    from congeal.apps.viewer.server import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org", ""))


def test_remote_host_needs_allow_remote(tmp_path, capsys):
    assert cli("view", tmp_path, "--host", "0.0.0.0") == 2
    error = capsys.readouterr().err
    assert "--allow-remote" in error and "no password" in error and "Traceback" not in error


def test_running_view_server_refuses_traversal_and_says_what_it_exposes(synthetic_run, tmp_path, capsys,
                                                                        monkeypatch):
    import viser

    import congeal.commands.view as view_command
    from congeal.apps.viewer.server import free_port

    _, run = synthetic_run("same")
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's private file")
    root = Path(viser.__file__).resolve().parent / "client" / "build"
    relpath = os.path.relpath(secret, root)
    assert relpath.startswith("..") and (root / relpath).resolve() == secret.resolve()  # a naive join serves it

    done = threading.Event()

    class Clock:  # lets the test end `congeal view` at once instead of waiting for --stop-after
        sleep = staticmethod(time.sleep)

        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + (1e9 if done.is_set() else 0.0)

    monkeypatch.setattr(view_command, "time", Clock)
    port = free_port()
    codes = []
    server = threading.Thread(target=lambda: codes.append(cli(
        "view", run, "--host", "0.0.0.0", "--allow-remote", "--port", port, "--stop-after", 600,
        "--mesh-resolution", 24)))
    server.start()
    try:
        _wait_for_server(port)
        status, body = _get(port, "/")
        assert status == 200 and b"<html" in body.lower()  # the server does serve its own files
        for attack in ("/" + relpath, "/" + relpath.replace("..", "%2e%2e"), "/" + relpath.replace("/", "%2f"),
                       "/" + relpath.replace("/", "\\"), "/static/../" + relpath):
            status, body = _get(port, attack)
            assert status == 404, (attack, status)
            assert b"private file" not in body
    finally:
        done.set()
        server.join(timeout=600)  # the scene build and viser's shutdown are slow on a loaded 2-core machine
    assert not server.is_alive(), "`congeal view` did not stop"
    assert codes == [0]
    err = capsys.readouterr().err
    assert "to the network" in err and "no password" in err and str(run) in err


def test_names_are_text_and_share_link_is_off(synthetic_run, monkeypatch):
    import viser
    from viser import _messages

    from congeal.apps.viewer.server import free_port, start_viewer

    markdown = []
    real_add_markdown = viser.GuiApi.add_markdown

    def recording_add_markdown(self, content, *args, **kwargs):
        handle = real_add_markdown(self, content, *args, **kwargs)
        markdown.append(handle)
        return handle

    monkeypatch.setattr(viser.GuiApi, "add_markdown", recording_add_markdown)
    _, run = synthetic_run("same")
    viewer = start_viewer(run, port=free_port(), max_mesh_resolution=24)
    try:
        photo = sorted(viewer.scene.cameras)[0]
        first = viewer.scene.cameras[photo]
        viewer.show_correspondences(photo, (first.width / 2.0, first.height / 2.0))
        assert photo in viewer.status.value  # shown, as the value of a read-only text field
        for handle in markdown:  # and never inside Markdown/MDX, where `{...}` in a name would be evaluated
            assert photo not in handle.content
        # a client's ShareUrlRequest reaches viser's handler, which must not open a public tunnel
        assert viewer.server.request_share_url() is None
        handlers = viewer.server._websock_server._incoming_handlers.get(_messages.ShareUrlRequest, [])
        assert handlers, "viser no longer registers a ShareUrlRequest handler: check how share links are requested"
        for handler in handlers:
            handler(0, None)
        time.sleep(1.0)
        assert getattr(viewer.server, "_share_tunnel", None) is None
    finally:
        viewer.stop()
