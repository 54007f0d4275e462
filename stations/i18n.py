"""Korean and English strings of the station app; server reason codes translated for operators.

A small catalog rather than Qt .ts/.qm files: no lrelease step in the build, and the tests can
check that every key exists in both languages with the same ``{placeholders}``.
"""
from __future__ import annotations

import string

# The server's machine-readable rejection reasons (web/services/completions/processing.py and
# the firmware rule).
REASON_CODES = (
    "lot_not_active", "wrong_step", "station_not_for_step", "measurement_missing", "out_of_spec",
    "quantity_exceeds_lot", "unknown_unit", "unit_scrapped", "unit_already_completed",
    "firmware_required", "firmware_not_released", "firmware_not_verified", "firmware_mismatch",
)
# printers.PrinterStatus reasons and warnings, plus the faults the drivers raise.
PRINTER_CODES = (
    "paper_out", "head_open", "ribbon_out", "paused", "buffer_full", "over_temperature",
    "diagnostic_mode", "under_temperature", "corrupt_ram", "partial_format", "label_waiting",
    "unreachable", "offline", "status_error", "not_configured",
)

CATALOG: dict[str, dict[str, str]] = {
    "en": {
        "app.title": "NeuroHub station {station}",
        "scan.placeholder": "Scan a lot or unit barcode (or type it and press Enter)",
        "scan.label": "Scan",
        "lot.none": "No lot loaded: scan a lot barcode",
        "lot.product": "Product", "lot.quantity": "Quantity", "lot.status": "Status",
        "lot.step": "Current step", "lot.unit": "Unit", "lot.serves": "This station",
        "lot.serves.yes": "serves {step}",
        "lot.serves.no": "does not serve {step} (serves {steps})",
        "lot.cached": "(offline copy from {when})",
        "lot.quantity_value": "{good} good of {quantity}, {passed} passed this step",
        "status.created": "created", "status.in_process": "in process",
        "status.completed": "completed", "status.on_hold": "on hold",
        "status.scrapped": "scrapped",
        "form.title": "Measurements", "form.none": "This step has no measurements",
        "form.limits": "{min} … {max} {unit}", "form.no_limits": "no limits",
        "form.in_limits": "in limits", "form.out_of_limits": "out of limits",
        "form.not_number": "not a number", "form.required": "required",
        "complete.button": "Complete", "complete.button_confirm": "Confirm (out of limits)",
        "complete.sending": "Sending…",
        "complete.in_flight": "#{seq} for {lot} {step}{unit} is already saved and not decided yet",
        "complete.queued": "Saved; sending #{seq}",
        "complete.queued_offline":
            "Saved offline (#{seq}); it will be sent when the server is back",
        "complete.accepted": "Accepted: {lot} {step}{unit}",
        "complete.rejected": "Rejected: {lot} {step}{unit}",
        "complete.failed": "Server could not process #{seq}: {detail}",
        "complete.invalid": "Server refused #{seq}: {detail}",
        "complete.out_of_limits_warning":
            "Values out of limits: the server will reject this and put the lot on hold. "
            "Check them. To record them anyway, press \"Confirm (out of limits)\" "
            "when it lights up.",
        "error.not_number": "{name}: \"{value}\" is not a number",
        "error.missing": "{name} is required",
        "error.no_lot": "Scan a lot first",
        "error.lot_not_active": "Lot {lot} is {status}: it cannot be completed",
        "error.wrong_station": "This station does not serve step {step}",
        "error.unknown_barcode": "Unknown barcode: {code}",
        "error.unknown_unit": "Unit {serial} is not in lot {lot}",
        "error.unknown_serial": "Unit {serial} is not in any lot known here: scan its lot first",
        "error.offline_not_cached": "Server unreachable and lot {code} is not in the offline cache",
        "error.server": "Server error: {detail}",
        "error.login_expired": "Login expired: please log in again",
        "error.firmware_missing":
            "No verified firmware for {product}: download and verify it before flashing",
        "error.scanner": "Scanner: {detail}",
        "error.printer": "Printer: {detail}",
        "offline.queued": "offline — {count} queued",
        "online.queued": "online — sending {count}",
        "online": "online",
        "status.connecting": "connecting to the server…",
        "offline": "offline",
        "queue.waiting_for_user": "{count} queued for {user}: waiting for that operator to log in",
        "status.user": "Operator: {user}",
        "status.printer": "Printer: {state}",
        "printer.ready": "ready", "printer.local": "local printer {uri}",
        "printer.printed": "label {job} printed",
        "printer.paper_out": "paper out", "printer.head_open": "head open",
        "printer.ribbon_out": "ribbon out", "printer.paused": "paused",
        "printer.buffer_full": "buffer full", "printer.over_temperature": "head too hot",
        "printer.diagnostic_mode": "diagnostic mode", "printer.under_temperature": "head too cold",
        "printer.corrupt_ram": "memory corrupt", "printer.partial_format": "partial label",
        "printer.label_waiting": "label waiting to be taken",
        "printer.unreachable": "unreachable", "printer.offline": "not answering",
        "printer.status_error": "unreadable status", "printer.not_configured": "not configured",
        "scanner.connected": "scanner connected", "scanner.disconnected": "scanner unplugged",
        "firmware.title": "Firmware", "firmware.none": "No firmware assigned to this station",
        "firmware.assigned": "{product} {version} ({state})",
        "firmware.downloading": "Downloading {version}…",
        "firmware.verified": "{version} verified (sha256 {short})",
        "firmware.corrupt": "Cached file of {version} was corrupt: downloading again",
        "firmware.failed": "Firmware download failed: {detail}",
        "firmware.download": "Download and verify",
        "login.title": "Log in", "login.username": "Username", "login.password": "Password",
        "login.button": "Log in", "login.badge_hint": "Scan your badge or type your username",
        "login.failed": "Wrong username or password",
        "login.offline_ok": "Server unreachable: logged in offline (work is queued)",
        "login.offline_unknown": "Server unreachable and this user never logged in here",
        "login.logout": "Log out", "login.idle": "Logged out after {minutes} idle minutes",
        "settings.title": "Station settings", "settings.server": "Server URL",
        "settings.station": "Station code", "settings.scanner_mode": "Scanner",
        "settings.scanner_port": "Serial port", "settings.scanner_baud": "Baud rate",
        "settings.scanner_terminator": "Terminator", "settings.gs_substitute": "GS substitute",
        "settings.printer_uri": "Local printer", "settings.language": "Language",
        "settings.data_dir": "Data folder", "settings.save": "Save",
        "settings.open": "Settings", "settings.invalid": "Please fix: {problems}",
        "scanner_mode.wedge": "keyboard wedge", "scanner_mode.serial": "serial",
        "scanner_mode.none": "none",
        "language.ko": "한국어", "language.en": "English",
        "results.title": "Results",
        "reason.unknown": "{code}",
        "reason.lot_not_active": "The lot is not active (on hold, scrapped or completed)",
        "reason.wrong_step": "The lot is at another step",
        "reason.station_not_for_step": "This station does not serve this step",
        "reason.measurement_missing": "A required measurement is missing",
        "reason.out_of_spec": "A measurement is out of limits; the lot is on hold",
        "reason.quantity_exceeds_lot": "More units than remain at this step",
        "reason.unknown_unit": "The unit is not in this lot",
        "reason.unit_scrapped": "The unit was scrapped",
        "reason.unit_already_completed": "The unit already passed this step",
        "reason.firmware_required": "This step needs the firmware version",
        "reason.firmware_not_released": "The firmware is not released for this product",
        "reason.firmware_not_verified": "The firmware is not verified on this station",
        "reason.firmware_mismatch": "The firmware file differs from the released one",
    },
    "ko": {
        "app.title": "NeuroHub 스테이션 {station}",
        "scan.placeholder": "LOT 또는 제품 바코드를 스캔하세요 (직접 입력 후 Enter)",
        "scan.label": "스캔",
        "lot.none": "LOT 없음: LOT 바코드를 스캔하세요",
        "lot.product": "제품", "lot.quantity": "수량", "lot.status": "상태",
        "lot.step": "현재 공정", "lot.unit": "제품 시리얼", "lot.serves": "이 스테이션",
        "lot.serves.yes": "{step} 공정 담당", "lot.serves.no": "{step} 공정 담당 아님 (담당: {steps})",
        "lot.cached": "(오프라인 사본, {when})",
        "lot.quantity_value": "양품 {good} / {quantity}, 이 공정 통과 {passed}",
        "status.created": "생성됨", "status.in_process": "진행 중",
        "status.completed": "완료", "status.on_hold": "보류",
        "status.scrapped": "폐기",
        "form.title": "측정값", "form.none": "이 공정은 측정값이 없습니다",
        "form.limits": "{min} … {max} {unit}", "form.no_limits": "한계 없음",
        "form.in_limits": "규격 내", "form.out_of_limits": "규격 벗어남",
        "form.not_number": "숫자가 아님", "form.required": "필수",
        "complete.button": "완공", "complete.button_confirm": "규격 벗어남 완공 확인",
        "complete.sending": "전송 중…",
        "complete.in_flight": "{lot} {step}{unit} 완공 #{seq}이(가) 이미 저장되어 결과를 기다리는 중입니다",
        "complete.queued": "저장됨; #{seq} 전송 중",
        "complete.queued_offline": "오프라인 저장됨 (#{seq}); 서버가 돌아오면 전송합니다",
        "complete.accepted": "완공 승인: {lot} {step}{unit}",
        "complete.rejected": "완공 거부: {lot} {step}{unit}",
        "complete.failed": "서버가 #{seq}을(를) 처리하지 못했습니다: {detail}",
        "complete.invalid": "서버가 #{seq}을(를) 거절했습니다: {detail}",
        "complete.out_of_limits_warning":
            "규격을 벗어난 값이 있습니다: 서버가 거부하고 LOT을 보류합니다. "
            "값을 확인하세요. 그래도 기록하려면 버튼이 켜진 뒤 「규격 벗어남 완공 확인」을 누르세요.",
        "error.not_number": "{name}: \"{value}\"은(는) 숫자가 아닙니다",
        "error.missing": "{name} 값이 필요합니다",
        "error.no_lot": "먼저 LOT을 스캔하세요",
        "error.lot_not_active": "LOT {lot} 상태가 {status}: 완공할 수 없습니다",
        "error.wrong_station": "이 스테이션은 {step} 공정을 담당하지 않습니다",
        "error.unknown_barcode": "알 수 없는 바코드: {code}",
        "error.unknown_unit": "제품 {serial}은(는) LOT {lot}에 없습니다",
        "error.unknown_serial": "제품 {serial}이(가) 속한 LOT을 모릅니다: 먼저 LOT을 스캔하세요",
        "error.offline_not_cached": "서버에 연결할 수 없고 LOT {code}이(가) 오프라인 캐시에 없습니다",
        "error.server": "서버 오류: {detail}",
        "error.login_expired": "로그인이 만료되었습니다: 다시 로그인하세요",
        "error.firmware_missing":
            "{product}의 검증된 펌웨어가 없습니다: 다운로드 및 검증 후 플래싱하세요",
        "error.scanner": "스캐너: {detail}",
        "error.printer": "프린터: {detail}",
        "offline.queued": "오프라인 — {count}건 대기",
        "online.queued": "온라인 — {count}건 전송 중",
        "online": "온라인",
        "status.connecting": "서버 연결 확인 중…",
        "offline": "오프라인",
        "queue.waiting_for_user": "{user}의 {count}건 대기: 해당 작업자 로그인 필요",
        "status.user": "작업자: {user}",
        "status.printer": "프린터: {state}",
        "printer.ready": "준비됨", "printer.local": "로컬 프린터 {uri}",
        "printer.printed": "라벨 {job} 인쇄됨",
        "printer.paper_out": "용지 없음", "printer.head_open": "헤드 열림",
        "printer.ribbon_out": "리본 없음", "printer.paused": "일시 정지",
        "printer.buffer_full": "버퍼 가득 참", "printer.over_temperature": "헤드 과열",
        "printer.diagnostic_mode": "진단 모드", "printer.under_temperature": "헤드 온도 낮음",
        "printer.corrupt_ram": "메모리 손상", "printer.partial_format": "라벨 일부만 수신",
        "printer.label_waiting": "라벨을 가져가세요",
        "printer.unreachable": "연결 불가", "printer.offline": "응답 없음",
        "printer.status_error": "상태 읽기 실패", "printer.not_configured": "설정 안 됨",
        "scanner.connected": "스캐너 연결됨", "scanner.disconnected": "스캐너 분리됨",
        "firmware.title": "펌웨어", "firmware.none": "이 스테이션에 배정된 펌웨어가 없습니다",
        "firmware.assigned": "{product} {version} ({state})",
        "firmware.downloading": "{version} 다운로드 중…",
        "firmware.verified": "{version} 검증 완료 (sha256 {short})",
        "firmware.corrupt": "{version} 캐시 파일 손상: 다시 다운로드합니다",
        "firmware.failed": "펌웨어 다운로드 실패: {detail}",
        "firmware.download": "다운로드 및 검증",
        "login.title": "로그인", "login.username": "사용자 이름", "login.password": "비밀번호",
        "login.button": "로그인", "login.badge_hint": "사원증을 스캔하거나 사용자 이름을 입력하세요",
        "login.failed": "사용자 이름 또는 비밀번호가 틀렸습니다",
        "login.offline_ok": "서버 연결 불가: 오프라인 로그인 (작업은 대기열에 저장)",
        "login.offline_unknown": "서버 연결 불가, 이 PC에서 로그인한 적 없는 사용자입니다",
        "login.logout": "로그아웃", "login.idle": "{minutes}분 동안 사용하지 않아 로그아웃되었습니다",
        "settings.title": "스테이션 설정", "settings.server": "서버 URL",
        "settings.station": "스테이션 코드", "settings.scanner_mode": "스캐너",
        "settings.scanner_port": "시리얼 포트", "settings.scanner_baud": "통신 속도",
        "settings.scanner_terminator": "종료 문자", "settings.gs_substitute": "GS 대체 문자",
        "settings.printer_uri": "로컬 프린터", "settings.language": "언어",
        "settings.data_dir": "데이터 폴더", "settings.save": "저장",
        "settings.open": "설정", "settings.invalid": "다음을 수정하세요: {problems}",
        "scanner_mode.wedge": "키보드 웨지", "scanner_mode.serial": "시리얼",
        "scanner_mode.none": "없음",
        "language.ko": "한국어", "language.en": "English",
        "results.title": "결과",
        "reason.unknown": "{code}",
        "reason.lot_not_active": "LOT이 활성 상태가 아닙니다 (보류, 폐기 또는 완료)",
        "reason.wrong_step": "LOT이 다른 공정에 있습니다",
        "reason.station_not_for_step": "이 스테이션은 이 공정을 담당하지 않습니다",
        "reason.measurement_missing": "필수 측정값이 없습니다",
        "reason.out_of_spec": "측정값이 규격을 벗어났습니다; LOT이 보류되었습니다",
        "reason.quantity_exceeds_lot": "이 공정에 남은 수량보다 많습니다",
        "reason.unknown_unit": "이 LOT에 없는 제품입니다",
        "reason.unit_scrapped": "폐기된 제품입니다",
        "reason.unit_already_completed": "이미 이 공정을 통과한 제품입니다",
        "reason.firmware_required": "이 공정은 펌웨어 버전이 필요합니다",
        "reason.firmware_not_released": "이 제품에 배포(릴리스)되지 않은 펌웨어입니다",
        "reason.firmware_not_verified": "이 스테이션에서 검증되지 않은 펌웨어입니다",
        "reason.firmware_mismatch": "펌웨어 파일이 배포된 파일과 다릅니다",
    },
}

_language = "ko"


def set_language(language: str) -> None:
    """Choose the UI language (``ko`` or ``en``)."""
    global _language
    if language not in CATALOG:
        raise ValueError(f"unsupported language {language!r}")
    _language = language


def language() -> str:
    """The current UI language."""
    return _language


def tr(key: str, **values) -> str:
    """The string for ``key`` in the current language, formatted with ``values``."""
    text = CATALOG[_language].get(key) or CATALOG["en"].get(key)
    if text is None:
        return key  # a missing key shows itself instead of crashing the operator's screen
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):
        return text


def reason_text(code: str, detail: str | None = None) -> str:
    """A server rejection reason in the operator's language, with the server's detail."""
    key = f"reason.{code}"
    text = tr(key) if key in CATALOG["en"] else tr("reason.unknown", code=code)
    return f"{text} ({detail})" if detail else text


def printer_text(code: str) -> str:
    """A printer condition (``paper_out``, ``head_open`` …) in the operator's language."""
    key = f"printer.{code}"
    return tr(key) if key in CATALOG["en"] else code


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a catalog string expects (used by the completeness test)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}
