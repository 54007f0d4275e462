"""Console pages on real data: roles, languages, inert user strings, lots, DHR exports, users."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from web.console.i18n import CATALOGUES

from .conftest import KOREAN_NAME, csrf_token

XSS = "<script>alert(1)</script>"


def test_every_page_renders_with_real_data(console, line):
    client = console("admin")
    for path in ("/console/", "/console/overview/live", "/console/lots",
                 f"/console/lots/{line['lot']}", "/console/users", "/console/audit"):
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        assert resp.headers["Cache-Control"] == "no-store"
    overview = client.get("/console/").get_data(as_text=True)
    assert line["held"] in overview and "솔더 불량 의심" in overview  # hold with its reason
    assert "measurement_out_of_range" in overview or "FCT" in overview
    assert 'hx-get="/console/overview/live"' in overview


def test_role_visibility(console, line):
    client = console("operator")
    page = client.get("/console/").get_data(as_text=True)
    assert "/console/lots" in page and "/console/users" not in page
    assert client.get("/console/users").status_code == 403
    assert client.get("/console/audit").status_code == 403
    lot = client.get(f"/console/lots/{line['lot']}").get_data(as_text=True)
    assert "action-hold" not in lot and "export-pdf" in lot
    token = csrf_token(client, "/console/")
    assert client.post(f"/console/lots/{line['lot']}/hold", data={
        "reason": "x", "csrf_token": token}).status_code == 403


def test_supervisor_holds_and_releases_with_a_reason(console, line):
    client = console("supervisor")
    assert client.get("/console/users").status_code == 403
    lot_page = f"/console/lots/{line['held']}"
    held = client.get(lot_page).get_data(as_text=True)
    assert "action-release" in held and "action-scrap" in held and "action-hold" not in held
    token = csrf_token(client, lot_page)
    resp = client.post(f"{lot_page}/release", data={"reason": "재작업 완료", "csrf_token": token},
                       follow_redirects=True)
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "lot.release" in page and "재작업 완료" in page  # the audit trail shows it
    resp = client.post(f"{lot_page}/release", data={"reason": "again", "csrf_token": token},
                       follow_redirects=True)
    assert "cannot release a lot that is in_process" in resp.get_data(as_text=True)


def test_language_follows_accept_language_then_the_switch(client, factory):
    assert "로그인" in client.get("/console/login", headers={
        "Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"}).get_data(as_text=True)
    page = client.get("/console/login", headers={"Accept-Language": "en-US"})
    assert "Log in" in page.get_data(as_text=True) and 'lang="en"' in page.get_data(as_text=True)
    token = csrf_token(client)
    client.post("/console/lang", data={"lang": "ko", "csrf_token": token,
                                       "next": "/console/login"})
    page = client.get("/console/login", headers={"Accept-Language": "en-US"})
    assert 'lang="ko"' in page.get_data(as_text=True) and "비밀번호" in page.get_data(as_text=True)


def test_catalogues_hold_the_same_messages():
    en = json.loads((CATALOGUES / "en.json").read_text(encoding="utf-8"))
    ko = json.loads((CATALOGUES / "ko.json").read_text(encoding="utf-8"))
    assert en.keys() == ko.keys() and all(ko.values())
    templates = Path(CATALOGUES).parent / "templates" / "console"
    import re
    used = {m for t in templates.glob("*.html")
            for m in re.findall(r"_\('([a-z0-9_.]+[a-z0-9_])'", t.read_text(encoding="utf-8"))}
    assert used <= en.keys(), sorted(used - en.keys())


def test_user_strings_render_inert(app, console, factory, auth):
    from tests.support.factories import FCT_ROUTING, SYSTEM
    from web.services import lots, products, stations, users
    with app.app_context():
        products.create_product("XSS-1", XSS, FCT_ROUTING, SYSTEM)
        lot = factory.lot("XSS-1", 2)
        lots.change_state(lot, "hold", XSS, SYSTEM)
        stations.create_station("ST-XSS", XSS, ["SMT"], f"sim://{XSS}", SYSTEM)
        stations.heartbeat("ST-XSS", {"app_version": XSS})
        users.create_user(XSS, "long-enough-pw", "operator", SYSTEM)
    client = console("admin")
    for path in ("/console/", "/console/lots", f"/console/lots/{lot}", "/console/audit",
                 f"/console/lots?product={XSS}", "/console/stations", "/console/stations/live",
                 "/console/printers", "/console/users", "/console/firmware",
                 "/console/backups", f"/console/audit?actor={XSS}"):
        page = client.get(path).get_data(as_text=True)
        assert XSS not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(
        f"/console/lots/{lot}").get_data(as_text=True)


def test_lot_search_filters_and_pages(console, factory, line):
    client = console("operator")
    extra = [factory.lot(line["product"], 1, serials=[f"SN-{line['lot']}-{i}"]) for i in range(3)]
    page = client.get("/console/lots", query_string={"product": line["product"]})
    text = page.get_data(as_text=True)
    assert all(n in text for n in extra + [line["lot"], line["held"]])
    new = client.get("/console/lots", query_string={"status": "created"}).get_data(as_text=True)
    assert all(n in new for n in extra) and line["held"] not in new
    by_serial = client.get("/console/lots", query_string={"serial": f"SN-{line['lot']}-1"})
    assert extra[1] in by_serial.get_data(as_text=True)
    assert extra[0] not in by_serial.get_data(as_text=True)
    assert line["lot"] in client.get("/console/lots", query_string={
        "lot": line["lot"]}).get_data(as_text=True)
    from web.console.views import lots as view
    view.PAGE_SIZE, saved = 2, view.PAGE_SIZE
    try:
        first = client.get("/console/lots", query_string={"product": line["product"]})
        assert 'id="next-page"' in first.get_data(as_text=True)
    finally:
        view.PAGE_SIZE = saved
    assert client.get("/console/lots?date=yesterday").status_code == 400
    assert client.get("/console/lots/NO-SUCH-LOT").status_code == 404


def test_lot_page_is_the_dhr(console, line):
    page = console("operator").get(f"/console/lots/{line['lot']}").get_data(as_text=True)
    assert KOREAN_NAME in page
    assert "voltage = 9.9" in page and "[3.2 … 3.4]" in page  # value against its limits
    assert "lot.created" in page  # the audit trail


def test_csv_export(console, line):
    resp = console("operator").get(f"/console/lots/{line['lot']}/dhr.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert f'{line["lot"]}-dhr.csv' in resp.headers["Content-Disposition"]
    assert "voltage" in resp.get_data(as_text=True)


def test_pdf_export_embeds_a_font_with_the_korean_name(console, line, tmp_path):
    resp = console("operator").get(f"/console/lots/{line['lot']}/dhr.pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    pdf = tmp_path / "dhr.pdf"
    pdf.write_bytes(resp.data)
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (poppler-utils, deploy/apt-packages.txt) is required"
    text = subprocess.run([pdftotext, "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=30).stdout
    assert KOREAN_NAME in text and line["lot"] in text and "voltage" in text
    fonts = subprocess.run([shutil.which("pdffonts"), str(pdf)], capture_output=True, text=True,
                           check=True, timeout=30).stdout
    assert "Nanum" in fonts and " yes " in fonts  # embedded (subset)


def test_admin_manages_users_and_reads_the_audit(console, factory):
    client = console("admin")
    token = csrf_token(client, "/console/users")
    resp = client.post("/console/users", data={"username": "kim", "password": "pw-12345678",
                                               "role": "operator", "csrf_token": token},
                       follow_redirects=True)
    assert 'data-user="kim"' in resp.get_data(as_text=True)
    from web.extensions import db
    from web.models import User
    kim = db.session.query(User).filter_by(username="kim").one()
    for path, data in ((f"/console/users/{kim.id}/role", {"role": "supervisor"}),
                       (f"/console/users/{kim.id}/password", {"password": "new-pass-9876"}),
                       (f"/console/users/{kim.id}/active", {"active": "0"})):
        assert client.post(path, data=data | {"csrf_token": token}).status_code == 302
    db.session.expire_all()
    kim = db.session.get(User, kim.id)
    assert (kim.role, kim.active) == ("supervisor", False)
    short = client.post("/console/users", data={"username": "lee", "password": "short",
                                                "role": "operator", "csrf_token": token},
                        follow_redirects=True)
    assert "at least 8 characters" in short.get_data(as_text=True)
    audit = client.get("/console/audit", query_string={"entity_type": "user",
                                                       "entity_id": str(kim.id)})
    text = audit.get_data(as_text=True)
    for action in ("user.created", "user.role_set", "user.password_reset", "user.disabled"):
        assert action in text
    mine = client.get("/console/audit", query_string={"actor": client.console_user})
    assert "user.created" in mine.get_data(as_text=True)
    assert "user.created" not in client.get("/console/audit", query_string={
        "actor": "nobody"}).get_data(as_text=True)


def test_a_disabled_user_is_logged_out_at_once(console, app):
    from web.services import users
    from web.services.audit import Actor
    client = console("supervisor")
    assert client.get("/console/").status_code == 200
    from web.extensions import db
    from web.models import User
    uid = db.session.query(User.id).filter_by(username=client.console_user).scalar()
    users.set_active(uid, False, Actor(None, "system:test"))
    assert client.get("/console/").status_code == 302


PAGES = {"/console/": "operator", "/console/stations": "operator", "/console/lots": "operator",
         "/console/printers": "supervisor", "/console/firmware": "supervisor",
         "/console/users": "admin", "/console/audit": "admin", "/console/backups": "admin"}


def test_each_role_sees_exactly_its_pages(console, db):
    from web.models import ROLE_RANK
    for role in ("operator", "supervisor", "admin"):
        client = console(role)
        menu = client.get("/console/").get_data(as_text=True).split("</nav>")[0]
        for path, needed in PAGES.items():
            allowed = ROLE_RANK[role] >= ROLE_RANK[needed]
            assert client.get(path).status_code == (200 if allowed else 403), (role, path)
            if path != "/console/":
                assert (f'href="{path}"' in menu) == allowed, (role, path)
        token = csrf_token(client, "/console/")
        client.post("/console/logout", data={"csrf_token": token})


def test_the_lot_pages_audit_trail_comes_newest_first_a_page_at_a_time(console, line, app,
                                                                        monkeypatch):
    """A big lot has thousands of audit events: the page shows the newest, each "older" button
    fetches the next page, and following them shows every event once, down to the first."""
    import re

    from web.console.views import lots as view
    from web.extensions import db
    from web.services import dhr
    from web.services import lots as svc
    monkeypatch.setattr(view, "AUDIT_PAGE", 2)
    client = console("operator")
    with app.app_context():
        want = [a["id"] for a in reversed(dhr.build(svc.get_lot(line["lot"]))["audit"])]
        db.session.rollback()
    assert len(want) > 4
    html = client.get(f"/console/lots/{line['lot']}").get_data(as_text=True)
    seen, pages = [], 0
    while True:
        body = html.split('id="lot-audit"', 1)[-1]
        seen += [int(i) for i in re.findall(r'<tr data-event="(\d+)"', body)]
        more = re.search(r'hx-get="([^"]+/audit\?before=\d+)"', body)
        if more is None:
            break
        pages += 1
        resp = client.get(more.group(1).replace("&amp;", "&"))
        assert resp.status_code == 200
        html = 'id="lot-audit"' + resp.get_data(as_text=True)
    assert seen == want and pages == (len(want) - 1) // 2
    assert client.get(f"/console/lots/{line['lot']}/audit?before=x").status_code == 400
