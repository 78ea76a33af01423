// ironhub console: the little the pages need beyond HTML forms (no framework).
"use strict";
// A list with data-events shows the server-sent events of that URL as they come (newest first).
document.querySelectorAll("[data-events]").forEach((list) => {
  const source = new EventSource(list.dataset.events);
  source.onopen = () => { list.dataset.state = "open"; };
  source.onerror = () => { list.dataset.state = "retrying"; };
  source.onmessage = (event) => {
    const m = JSON.parse(event.data);
    const item = document.createElement("li");
    const props = Object.entries(m.properties || {}).map(([k, v]) => `${k}=${v}`).join(" ");
    // The whole hub's list says who sent each message.
    const from = list.dataset.from === "show" ? `${m.deviceId}${m.moduleId ? "/" + m.moduleId : ""}: ` : "";
    item.textContent = `${m.enqueuedTime}  ${from}${m.body}${props ? "  [" + props + "]" : ""}`;
    list.prepend(item);
  };
});
// A form with data-confirm asks before it is sent.
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});
