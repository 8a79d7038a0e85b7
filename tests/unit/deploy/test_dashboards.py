"""The Grafana dashboards: the committed JSON is what ``deploy/grafana/build_dashboards.py`` builds,
and every panel queries Prometheus with variables the dashboard defines. (Their PromQL is evaluated
through a real Prometheus in ``tests/integration/consumers/test_prometheus.py``.)"""

from __future__ import annotations

import json
import re

import pytest

from deploy.grafana.build_dashboards import DASHBOARDS, OUT, render


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_the_committed_dashboard_is_what_the_builder_builds(name):
    assert (OUT / f"{name}.json").read_text() == render(name), \
        "run `python -m deploy.grafana.build_dashboards` and commit the result"


def test_no_stray_dashboard_files():
    assert sorted(p.stem for p in OUT.glob("*.json")) == sorted(DASHBOARDS)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_queries_and_uses_only_defined_variables(name):
    board = json.loads(render(name))
    defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval"}
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= defined, f"{panel['title']}: {used - defined}"
            assert "customer" not in target["expr"] and "referrer_id" not in target["expr"]
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_the_issue_s_dashboards_and_variables_are_there():
    titles = {json.loads(render(n))["title"] for n in DASHBOARDS}
    assert titles == {"Referral funnel", "Rewards", "Fraud and quality", "Pipeline health"}
    funnel = json.loads(render("referral-funnel"))
    assert {v["name"] for v in funnel["templating"]["list"]} == {"campaign", "channel"}
