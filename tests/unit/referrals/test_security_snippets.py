"""The token snippets of docs/security.md issue what the gateway accepts: the Python one run here, the
JavaScript one with Node.js (Debian's `nodejs`, which `make setup` installs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

from referrals.customer_tokens import verify
from referrals.settings import PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "security.md"
SECRET = "ts_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def snippet(language: str) -> str:
    (code,) = re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)
    return code


def accepted(token: str, key_name: str = "web") -> str:
    return verify(token, secret=SECRET, key_name=key_name, now=time.time(), max_ttl_s=86400)


def test_the_python_snippet_issues_a_token_the_gateway_accepts():
    namespace: dict = {}
    exec(compile(snippet("python"), str(PAGE), "exec"), namespace)
    assert accepted(namespace["customer_token"](SECRET, "web", "cust-ä.1")) == "cust-ä.1"


def test_the_javascript_snippet_issues_a_token_the_gateway_accepts(tmp_path):
    node = shutil.which("node")
    assert node, "node is missing: `make setup` installs Debian's nodejs"
    (tmp_path / "token.mjs").write_text(snippet("js"))
    (tmp_path / "run.mjs").write_text(
        'import { customerToken } from "./token.mjs";\n'
        'const [secret, key, customer] = JSON.parse(process.argv[2]);\n'
        'console.log(customerToken(secret, key, customer));\n')
    done = subprocess.run([node, str(tmp_path / "run.mjs"), json.dumps([SECRET, "web", "cust-ä.1"])],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert accepted(done.stdout.strip()) == "cust-ä.1"
