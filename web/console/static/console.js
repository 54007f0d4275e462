// NeuroHub MES console: confirmations and the firmware upload's progress bar (no framework).
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// The upload goes by XMLHttpRequest for its progress events; the CSRF token travels in a
// header because the server streams the body to storage without reading it as a form.
const upload = document.getElementById("firmware-upload");
if (upload) {
  upload.addEventListener("submit", (event) => {
    event.preventDefault();
    const bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    const file = upload.elements.file.files[0];
    if (file && file.size > Number(upload.dataset.max)) {
      status.textContent = `> ${upload.dataset.max} B`;
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open("POST", upload.action);
    xhr.setRequestHeader("X-CSRFToken", upload.dataset.csrf);
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 201) {
        bar.value = 100;
        window.location.assign(body.redirect);
      } else {
        status.textContent = `${xhr.status}: ${body.detail || xhr.statusText} ${body.errors || ""}`;
      }
    });
    xhr.addEventListener("error", () => { status.textContent = "network error"; });
    const data = new FormData(upload);
    for (const name of ["sha256", "notes"]) {
      if (!data.get(name)) data.delete(name); // optional: absent, not empty, as the API wants
    }
    xhr.send(data);
  });
}
