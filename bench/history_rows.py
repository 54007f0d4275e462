"""The rows of bench/history.py's database, as the real code writes them: the row shapes (steps,
products, stations, operators), the generator of each lot's history (Gen) and the COPY files (Out).
"""
from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

T0 = datetime(2025, 12, 1, 6, 0, tzinfo=timezone.utc)
# step code -> (name, measurements, requires_firmware, label_template, per unit in serialised lots)
V, I = ({"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4, "required": True},
        {"name": "current_ma", "unit": "mA", "min": 30, "max": 50, "required": True})
STEPS = {
    "SMT": ("SMT assembly", [], False, None, False),
    "AOI": ("Optical inspection", [], False, None, False),
    "ICT": ("In-circuit test", [{"name": "resistance_ohm", "unit": "ohm", "min": 95, "max": 105,
                                 "required": True}], False, None, False),
    "FLASH": ("Firmware flashing", [], True, None, True),
    "CAL": ("Calibration", [{"name": "offset_mv", "unit": "mV", "min": -5, "max": 5,
                             "required": True}], False, None, True),
    "FCT": ("Functional test", [V, I], False, "unit", True),
    "MARK": ("Unit marking", [], False, "unit", True),
    "PACK": ("Packing", [], False, "box", False),
}
# NH-100 is seed-demo's (SMT lot label, FLASH, FCT unit label, PACK box label).
PRODUCTS = {"NH-200": ("NeuroHub power board", ["SMT", "AOI", "ICT", "PACK"]),
            "NH-300": ("NeuroHub sensor pro", ["SMT", "FLASH", "CAL", "FCT", "MARK", "PACK"])}
STATIONS = [("ST-08", "AOI", ["AOI"]), ("ST-09", "In-circuit test", ["ICT"]),
            ("ST-10", "Calibration", ["CAL"]), ("ST-11", "Marking", ["MARK"]),
            ("ST-12", "Functional test 3", ["FCT"])]
OPERATORS = [f"op-{i:02d}" for i in range(1, 13)]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def esc(s: str) -> str:
    """A value in COPY's text format."""
    if "\\" not in s and "\n" not in s and "\t" not in s and "\r" not in s:
        return s
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


_CELL = {type(None): lambda v: "\\N", str: esc, int: str, float: repr,
         bool: lambda v: "t" if v else "f", datetime: datetime.isoformat,
         dict: lambda v: esc(json.dumps(v)), list: lambda v: esc(json.dumps(v))}


def cell(v) -> str:
    return _CELL[type(v)](v)


class Out:
    """One TSV file per table, COPYed in foreign-key order at the end."""

    def __init__(self, tmp: Path):
        self.files, self.cols, self.count, self.tmp = {}, {}, {}, tmp

    def row(self, table: str, **values) -> None:
        f = self.files.get(table)
        if f is None:
            f = self.files[table] = open(self.tmp / f"{table}.tsv", "w", buffering=1 << 20)
            self.cols[table], self.count[table] = list(values), 0
        f.write("\t".join(cell(v) for v in values.values()) + "\n")
        self.count[table] += 1

    def load(self, conn, order) -> None:
        for table in order:
            if table not in self.files:
                continue
            self.files[table].close()
            t = time.monotonic()
            with conn.cursor() as cur, cur.copy(
                    f"COPY {table} ({', '.join(self.cols[table])}) FROM STDIN") as copy, \
                    open(self.tmp / f"{table}.tsv", "rb") as f:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
            conn.commit()
            log(f"  {table}: {self.count[table]:,} rows in {time.monotonic() - t:.0f}s")



class Gen:
    """Writes the history of each lot: what create_lot, submit, the worker and printing write."""

    def __init__(self, a, ref: dict, out: Out, start_ids: dict):
        self.a, self.ref, self.out = a, ref, out
        self.rng = random.Random(a.seed)
        self.ids = dict(start_ids)
        self.days: dict[str, int] = {}
        self.ops = [(ref["users"][o], o) for o in OPERATORS]
        self.sup = (ref["users"]["supervisor"], "supervisor")
        from web.services.completions.processing import judge_measurements
        self.judge = judge_measurements

    def next(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def audit(self, at, actor, action, etype, eid, lot_id, before=None, after=None, rid=None):
        self.out.row("audit_events", id=self.next("audit_events"), at=at, actor_id=actor[0],
                     actor=actor[1], action=action, entity_type=etype, entity_id=str(eid),
                     lot_id=lot_id, before=before, after=after, request_id=rid)

    def lot(self, i: int, code: str, units: int, qty: int, done_steps: int | None):
        """A generator: one completion (and its audit rows and labels) per step of it."""
        p = self.ref["products"][code]
        at = T0 + timedelta(seconds=i * 365 * 86400 / self.a.lots)
        day = at.strftime("%Y%m%d")
        self.days[day] = self.days.get(day, 0) + 1
        lot_no = f"LOT-{day}-{self.days[day]:04d}"
        lot_id = self.next("lots")
        serials = [f"{code[-3:]}{lot_id:06d}{u:04d}" for u in range(units)]
        for s in serials:
            self.out.row("lot_units", id=self.next("lot_units"), lot_id=lot_id, serial=s,
                         status="ok")
        self.audit(at, self.sup, "lot.created", "lot", lot_no, lot_id, after={
            "product": code, "quantity": qty, "revision": 1, "serials": units})
        yield
        st = {"status": "created", "step": p["steps"][0][1], "seq": p["steps"][0][0],
              "hold": None, "passed": 0, "qty": qty}
        steps = p["steps"][:done_steps] if done_steps is not None else p["steps"]
        t = at + timedelta(minutes=5)
        for seq, step, specs, fw_req, label in steps:
            per_unit = bool(serials) and STEPS[step][4]
            if per_unit:
                parts = [(s, 1) for s in serials]
            else:
                k = 1 if serials else max(1, self.a.batch_parts + self.rng.randint(-2, 2))
                parts = [(None, qty // k + (1 if j < qty % k else 0)) for j in range(k)]
            for serial, good in parts:
                t += timedelta(seconds=self.rng.randint(20, 90))
                if self.rng.random() < 0.03:
                    t = self.completion(t, lot_no, lot_id, p, seq, step, specs, fw_req, label,
                                        serial, good, st, reject=True)
                t = self.completion(t, lot_no, lot_id, p, seq, step, specs, fw_req, label,
                                    serial, good, st, reject=False)
                yield  # the other lots on the line take their turn (their rows interleave)
            nxt = next((s for s in p["steps"] if s[0] > seq), None)
            before = {"status": st["status"], "step": step, "qty_good": qty}
            st["status"], st["passed"] = ("completed", 0) if nxt is None else ("in_process", 0)
            st["step"], st["seq"] = (None, None) if nxt is None else (nxt[1], nxt[0])
            self.audit(t, (None, "system:worker"),
                       "lot.completed" if nxt is None else "lot.advanced", "lot", lot_no, lot_id,
                       before=before, after={"status": st["status"], "step": st["step"],
                                             "qty_good": qty})
        self.out.row("lots", id=lot_id, lot_no=lot_no, product_id=p["id"],
                     routing_revision_id=p["revision_id"], quantity=qty, qty_good=qty,
                     step_passed=st["passed"], status=st["status"], current_seq=st["seq"],
                     current_step=st["step"], hold_reason=None, created_by="supervisor",
                     created_at=at, updated_at=t)

    def completion(self, t, lot_no, lot_id, p, seq, step, specs, fw_req, label, serial, good,
                   st, reject: bool):
        rng, worker = self.rng, (None, "system:worker")
        cid = self.next("completions")
        op = self.ops[cid % len(self.ops)]
        station_id, station = self.ref["stations"][step][cid % len(self.ref["stations"][step])]
        meas = {}
        for m in specs:
            mid = (m["min"] + m["max"]) / 2
            meas[m["name"]] = round(rng.gauss(mid, (m["max"] - m["min"]) / 12), 3)
        reasons, kind = [], rng.random()
        if reject:
            if specs and kind < 0.7:
                m = specs[0]
                meas[m["name"]] = round(m["max"] * 1.2 + 1, 3)
            else:
                reasons = [{"code": "wrong_step", "detail": f"lot is at {st['step']}, not X"}]
        results, mreasons = self.judge(specs, meas)
        reasons = mreasons + reasons if reject else []
        fw = self.ref["firmware"].get(p["id"]) if fw_req else None
        done = t + timedelta(milliseconds=rng.randint(40, 400))
        rid = uuid.uuid4().hex
        self.out.row("completions", id=cid, idempotency_key=uuid.uuid4().hex,
                     request_hash=hashlib.sha256(rid.encode()).hexdigest(), lot_id=lot_id,
                     step=step, station_id=station_id, operator_id=op[0], unit_serial=serial,
                     measurements=meas, firmware_version=fw[1] if fw else None,
                     firmware_sha256=fw[2] if fw else None,
                     firmware_id=fw[0] if fw and not reject else None,
                     qty_good=None if serial else good, qty_scrap=None if serial else 0,
                     status="rejected" if reject else "accepted", reasons=reasons,
                     results=results, error=None, received_at=t, processed_at=done)
        self.audit(t, op, "completion.received", "completion", cid, lot_id, after={
            "lot_no": lot_no, "step": step, "station": station}, rid=rid)
        if reject:
            self.audit(done, worker, "completion.rejected", "completion", cid, lot_id,
                       after={"reasons": [r["code"] for r in reasons]})
            if any(r["code"] == "out_of_spec" for r in reasons):
                hold = f"out_of_spec in completion {cid}"
                self.audit(done, worker, "lot.hold", "lot", lot_no, lot_id,
                           before={"status": st["status"], "step": step},
                           after={"status": "on_hold", "step": step, "reason": hold})
                t = done + timedelta(minutes=rng.randint(5, 60))
                self.audit(t, self.sup, "lot.release", "lot", lot_no, lot_id,
                           before={"status": "on_hold", "step": step},
                           after={"status": "in_process", "step": step, "reason": "retested"},
                           rid=uuid.uuid4().hex)
            return t
        self.audit(done, worker, "completion.accepted", "completion", cid, lot_id,
                   after={"step": step, "qty_good": good, "qty_scrap": 0})
        if st["status"] == "created":
            self.audit(done, worker, "lot.started", "lot", lot_no, lot_id,
                       before={"status": "created", "step": step, "qty_good": st["qty"]},
                       after={"status": "in_process", "step": step})
            st["status"] = "in_process"
        if label:
            self.label(done, lot_no, lot_id, p, label, serial, good, station_id, cid)
        return t

    def label(self, at, lot_no, lot_id, p, name, serial, good, station_id, cid) -> None:
        version, zpl = self.ref["zpl"][name]
        code = next(c for c, v in self.ref["products"].items() if v is p)
        data = {"product_code": code, "product_name": p["name"], "lot_no": lot_no,
                "date": at.strftime("%Y-%m-%d")}
        if name == "unit":
            data["serial"] = serial or f"{lot_no}-U"
        else:
            data["quantity"] = good
        if name == "lot":
            data["routing"] = " > ".join(s[1] for s in p["steps"])
        text = (zpl.replace("LOTNUMBER", lot_no).replace("SERIALNO", data.get("serial", ""))
                .replace("PCODE", code).replace("PNAME", p["name"])
                .replace("2026-01-01", data["date"]).replace("ROUTING", data.get("routing", ""))
                .replace("1234567", str(good)))
        sha = hashlib.sha256(text.encode()).hexdigest()
        jid, printer = self.next("label_jobs"), self.ref["printer"]
        recent = lot_id > self.a.lots * 0.995
        sent = None if recent else at + timedelta(seconds=2)
        self.out.row("label_jobs", id=jid, template_name=name, template_version=version,
                     data=data, zpl=text, zpl_sha256=sha, printer_uri=printer,
                     station_id=station_id, lot_id=lot_id, completion_id=cid, unit_serial=serial,
                     copies=1, reason="first_print", reprint_reason=None, reprint_of=None,
                     state="queued" if recent else "printed", attempts=0 if recent else 1,
                     printer_reason=None, error=None, created_by="system:worker", created_at=at,
                     sent_at=sent, printed_at=sent)
        worker = (None, "system:worker")
        self.audit(at, worker, "label.queued", "label_job", jid, lot_id, after={
            "template": f"{name}:{version}", "printer": printer, "sha256": sha, "serial": serial,
            "reason": None})
        if sent:
            self.audit(sent, worker, "label.sent", "label_job", jid, lot_id,
                       after={"printer": printer, "sha256": sha})
            self.audit(sent, worker, "label.printed", "label_job", jid, lot_id,
                       after={"printer": printer})

    def run(self) -> None:
        a, rng = self.a, self.rng
        per_lot = a.completions / a.lots / 1.03  # ~3 % rejects come on top
        big = a.lots // 2
        line: list = []  # the lots in process at the same time, taking turns
        for i in range(a.lots):
            code = ("NH-100", "NH-200", "NH-300")[i % 3]
            n_steps = len(self.ref["products"][code]["steps"])
            f = rng.uniform(0.5, 1.5)
            done = None
            if i >= a.lots * 0.99:  # the newest lots are still on the line
                done = rng.randint(0, n_steps - 1)
            if i == big:
                lot = self.lot(i, "NH-100", a.big_units, a.big_units, None)
            elif code == "NH-200":  # batch: each step in parts
                lot = self.lot(i, code, 0, rng.randint(200, 2000), done)
            else:  # serialised: per-unit steps, SMT and PACK for the whole lot
                per_unit = sum(1 for s in self.ref["products"][code]["steps"] if STEPS[s[1]][4])
                units = max(1, round((per_lot * 1.35 - 2) / per_unit * f))
                lot = self.lot(i, code, units, units, done)
            next(lot)  # numbered and created now, in order
            line.append(lot)
            while len(line) >= a.wip or (i == a.lots - 1 and line):  # turns until one is done
                line = [lot for lot in line if next(lot, StopIteration) is not StopIteration]
            if i % 2000 == 0:
                log(f"  lot {i:,}: {self.ids['completions']:,} completions")
        for day, last in self.days.items():
            self.out.row("lot_sequences", day=day, last=last)
