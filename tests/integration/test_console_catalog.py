"""The console's catalogue through the real app: a dataset's page quotes the clauses its rules
encode, an unknown dataset is a 404 page, an artefact's page draws its multi-hop lineage as an
inline SVG with the restrictions its inputs bring, artefacts are visible only to their owner, an
approver or an auditor, and nothing answers without a session."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from governance.approvals import workflow
from governance.identity.roles import Role, grant_role
from governance.workspace import Workspace
from tests.integration.helpers import NOW, OPERATOR, PASSWORD, add_approver, add_login

DEEPFASHION = "Users must not further reproduce, distribute, sell, or commercially exploit any images or derived data"


@dataclass
class World:
    ws: Workspace
    app: Any


@pytest.fixture
def world(ws: Workspace) -> Iterator[World]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from api.app import create_app

    alice = add_login(ws, "alice@ust.hk", organisation="hkust", site="cwb")
    add_login(ws, "bob@cuhk.edu.hk", organisation="cuhk")
    add_approver(ws, "steward@sensetime.com", "genebody", organisation="sensetime")
    ws.authenticator.set_password(actor=OPERATOR, now=NOW, email="steward@sensetime.com", password=PASSWORD)
    add_login(ws, "audit@lab.example", organisation="lab")
    grant_role(ws, actor=OPERATOR, now=NOW, email="audit@lab.example", role=Role.AUDITOR, dataset=None,
               datasets=ws.policies.datasets)
    workflow.tag_origins(ws, actor=OPERATOR, now=NOW, dataset_id="shhq",
                         tags={"SHHQ-1.0/images/000001.png": ["deepfashion"], "SHHQ-1.0/images/000002.png": ["pexels"]})
    workflow.register_artefact(ws, actor=alice, now=NOW, ident="alice-features", description="Body features",
                               inputs=["shhq:SHHQ-1.0/images/000001.png", "genebody/train40"])
    workflow.register_artefact(ws, actor=alice, now=NOW, ident="alice-avatar", description="Avatar model",
                               inputs=["artefact:alice-features", "shhq:SHHQ-1.0/images/000002.png"])
    app = create_app(workspace=ws)
    yield World(ws=ws, app=app)


def client(w: World) -> Any:
    from fastapi.testclient import TestClient

    # https: the session cookie is Secure (and __Host-), so the test client must speak https.
    return TestClient(w.app, base_url="https://testserver", raise_server_exceptions=False, follow_redirects=False)


def login(w: World, email: str, password: str = PASSWORD) -> Any:
    c = client(w)
    form = c.get("/console/login")
    assert form.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found
    done = c.post("/console/login", data={"csrf": found.group(1), "email": email, "password": password,
                                          "next": "/console/datasets"})
    assert done.status_code == 303, done.text
    return c


def test_every_dataset_and_source_is_listed_with_its_licensor_and_whether_it_has_terms(world: World) -> None:
    page = login(world, "alice@ust.hk").get("/console/datasets")
    assert page.status_code == 200
    for ident in ("huge100k", "genebody", "2k2k", "shhq", "clonedperson", "deepfashion", "pexels"):
        assert f'href="/console/datasets/{ident}"' in page.text
    assert "Shanghai AI Lab" in page.text and "seed-003" in page.text
    assert "no terms: discover only" in page.text  # ClonedPerson


def test_a_dataset_page_quotes_each_rules_clause_and_each_requirements_clause(world: World) -> None:
    page = login(world, "steward@sensetime.com").get("/console/datasets/shhq")
    assert page.status_code == 200
    text = page.text
    assert "You agree NOT to further copy, publish or distribute any portion of SHHQ to any third party" in text
    assert 'id="rule-no-third-party"' in text and "third_party" in text
    assert "The signature in the agreement should be hand-written." in text  # the 1.0 requirement's clause
    assert "SHHQ-1.0/**" in text and "hand-signed agreement" in text
    assert "Shanghai AI Lab reserves the right to terminate your access" in text
    assert "meet-source-licences" in text


def test_a_source_page_shows_its_waivable_rules_and_the_subsets_drawing_on_it(world: World) -> None:
    page = login(world, "alice@ust.hk").get("/console/datasets/deepfashion")
    assert page.status_code == 200
    assert DEEPFASHION in page.text and "mmlab-cuhk" in page.text
    assert "huge100k/deepfashion" in page.text and "shhq/1.0" in page.text


def test_an_unknown_dataset_is_a_404_page_in_html(world: World) -> None:
    page = login(world, "alice@ust.hk").get("/console/datasets/nosuch")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "no dataset or source 'nosuch'" in html.unescape(page.text)


def test_the_owner_sees_the_multi_hop_lineage_as_svg_with_the_deepfashion_restriction(world: World) -> None:
    c = login(world, "alice@ust.hk")
    listing = c.get("/console/artefacts")
    assert listing.status_code == 200
    assert 'href="/console/artefacts/alice-avatar"' in listing.text and 'href="/console/artefacts/alice-features"' in listing.text
    page = c.get("/console/artefacts/alice-avatar")
    assert page.status_code == 200, page.text
    svg = page.text[page.text.index("<svg"):page.text.index("</svg>")]
    for label in ("alice-avatar", "alice-features", "genebody/train40", "DeepFashion", "Pexels"):
        assert label in svg
    assert "<path" in svg and "<rect" in svg and "style=" not in svg
    assert "<script" not in page.text.split("</head>", 1)[1]
    # Beside the graph: DeepFashion's clause, reached through the tagged SHHQ file.
    assert DEEPFASHION in page.text and "deepfashion#no-further-reproduction" in page.text
    # The table fallback names the same nodes and edges.
    table = page.text[page.text.index('id="graph-nodes"'):]
    assert "alice-features" in table and "origin recorded in the manifest" in table
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_researcher_who_does_not_own_an_artefact_is_told_it_does_not_exist(world: World) -> None:
    c = login(world, "bob@cuhk.edu.hk")
    assert "alice-avatar" not in c.get("/console/artefacts").text
    page = c.get("/console/artefacts/alice-avatar")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "no artefact 'alice-avatar'" in html.unescape(page.text)


@pytest.mark.parametrize("who", ["steward@sensetime.com", "audit@lab.example"])
def test_an_approver_and_an_auditor_see_every_artefact(world: World, who: str) -> None:
    c = login(world, who)
    assert 'href="/console/artefacts/alice-avatar"' in c.get("/console/artefacts").text
    assert c.get("/console/artefacts/alice-features").status_code == 200


@pytest.mark.parametrize("path", ["/console/datasets", "/console/datasets/shhq", "/console/artefacts",
                                  "/console/artefacts/alice-avatar"])
def test_without_a_session_every_catalogue_page_redirects_to_the_login(world: World, path: str) -> None:
    response = client(world).get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login?next=")


def test_the_demos_two_hop_shhq_artefact_shows_deepfashions_restriction_to_the_auditor(ws: Workspace) -> None:
    from api.app import create_app
    from governance.demo import AUDITOR, seed

    summary = seed(ws, now=NOW)
    w = World(ws=ws, app=create_app(workspace=ws))
    c = login(w, AUDITOR, summary.password)
    listing = c.get("/console/artefacts").text
    for ident in ("alice-nerf-v1", "ben-pose-features", "ben-human-gan"):
        assert f'href="/console/artefacts/{ident}"' in listing
    page = c.get("/console/artefacts/ben-human-gan")
    assert page.status_code == 200
    svg = page.text[page.text.index("<svg"):page.text.index("</svg>")]
    assert "ben-pose-features" in svg and "DeepFashion" in svg and "CC0" in svg
    assert DEEPFASHION in page.text
