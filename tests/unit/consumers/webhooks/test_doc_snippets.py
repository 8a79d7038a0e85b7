"""The verification snippets of docs/webhooks.md work: run against messages the dispatcher signed, the Python one
with the `standardwebhooks` package, the JavaScript one with Node.js (Debian's `nodejs`, which `make setup`
installs); both refuse a changed body."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from consumers.webhooks.signing import headers
from referrals.settings import PROJECT_ROOT
from schemas.derived import RewardStatus
from schemas.webhooks import reward_change
from tests.unit.consumers.webhooks.factories import endpoint, new_secret, reward

PAGE = PROJECT_ROOT / "docs" / "webhooks.md"


def snippet(language: str) -> str:
    (code,) = re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)
    return code


def signed(secret: str) -> tuple[bytes, dict[str, str]]:
    change = reward_change(reward("rw-7", RewardStatus.CONFIRMED))
    return change.body, headers(endpoint(secret=secret).keys(), change.webhook_id, int(time.time()), change.body)


def test_the_python_snippet_verifies_a_delivery_and_refuses_a_changed_one():
    secret = new_secret()
    issued = []
    namespace = {"SECRET": secret, "already_processed": lambda webhook_id: False,
                 "issue_reward": lambda *args: issued.append(args)}
    exec(compile(snippet("python"), str(PAGE), "exec"), namespace)
    body, signed_headers = signed(secret)
    namespace["referral_webhook"](body, signed_headers)
    assert issued == [("cust-1", 500, "rw-7")]
    with pytest.raises(WebhookVerificationError):
        namespace["referral_webhook"](body.replace(b"500", b"5000"), signed_headers)


def test_the_javascript_snippet_verifies_a_delivery_and_refuses_a_changed_one(tmp_path):
    node = shutil.which("node")
    assert node, "node is missing: `make setup` installs Debian's nodejs"
    (tmp_path / "verify.mjs").write_text(snippet("js"))
    (tmp_path / "run.mjs").write_text(
        'import { verify } from "./verify.mjs";\n'
        'const [secret, headers, body] = JSON.parse(process.argv[2]);\n'
        'console.log(JSON.stringify(verify(secret, headers, body)));\n')
    secret = new_secret()
    body, signed_headers = signed(secret)

    def run(raw: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([node, str(tmp_path / "run.mjs"), json.dumps([secret, signed_headers, raw.decode()])],
                              capture_output=True, text=True, timeout=30)

    done = run(body)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"]["reward_id"] == "rw-7"
    refused = run(body.replace(b"500", b"5000"))
    assert refused.returncode != 0 and "no matching signature" in refused.stderr
