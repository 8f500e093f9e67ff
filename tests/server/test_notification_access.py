"""Notification targets through a real `stageline server`: only an admin of the environment
adds, tests or removes one; a viewer sees them by host, never the URL; the URL is in no
answer, log or database row as text."""

from __future__ import annotations

import json

from tests.http_recorder import recorder
from tests.server.conftest import Served, no_secret_text

TOKEN = "T0SERVER/B0SERVER/server-webhook-token"


def test_a_viewer_cannot_add_test_or_remove_a_target_and_sees_no_url(
    served_alone: Served,
) -> None:
    served = served_alone
    admin = served.remote(served.add_user("ana", "production:admin", "*:viewer"), "ana")
    viewer = served.remote(served.ci_token("watcher", "--role", "viewer"), "watcher")
    dev_admin = served.remote(served.ci_token("dev-admin", "--env", "dev", "--role", "admin"), "d")
    with recorder() as chat:
        url = f"{chat.url}/services/{TOKEN}"
        for someone in (viewer, dev_admin):
            refused = someone("notify", "add", "production", "ops", input=url)
            assert refused.code == 2, refused
            assert "Traceback" not in refused.err

        added = admin("notify", "add", "production", "ops", "--json", input=url)
        assert added.code == 0, added.err
        assert json.loads(added.out)["url_host"] == chat.url

        listed = viewer("notify", "list", "production", "--json")
        assert listed.code == 0, listed.err
        [target] = json.loads(listed.out)
        assert target["name"] == "ops" and target["url_host"] == chat.url

        for command in ("test", "remove"):
            refused = viewer("notify", command, "production", "ops")
            assert refused.code == 2
            assert "needs the admin role" in refused.err, refused.err
        assert dev_admin("notify", "list", "production").code == 2
        assert chat.calls == []

        tried = admin("notify", "test", "production", "ops")
        assert tried.code == 0, tried.err
        assert len(chat.calls) == 1 and chat.calls[0].path == f"/services/{TOKEN}"
        assert admin("notify", "remove", "production", "ops").code == 0

    audit = served.machine.ok("audit", "--env", "production", "--json").out
    entries = [(e["actor"], e["action"]) for e in json.loads(audit)]
    assert ("watcher", "access.refused") in entries
    assert ("ana", "notification.add") in entries and ("ana", "notification.remove") in entries
    for part in TOKEN.split("/"):
        no_secret_text(served, part)
        assert part not in audit
