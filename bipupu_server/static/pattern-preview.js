// The broadcast form's live preview: how the pupu device would show the card, as the admin edits it.
// Loaded from a file (the admin pages' CSP allows no inline script); without it the form still works.
(function () {
  "use strict";
  var form = document.getElementById("broadcast");
  var preview = document.getElementById("preview");
  if (!form || !preview) {
    return;
  }
  var text = document.getElementById("preview-text");
  var caption = document.getElementById("preview-caption");
  var COLOUR = /^#[0-9a-fA-F]{6}$/;

  function field(name) {
    var element = form.elements.namedItem(name);
    if (!element) {
      return "";
    }
    return element.type === "checkbox" ? (element.checked ? "1" : "") : element.value;
  }

  function swap(prefix, wanted) {
    Array.prototype.slice.call(preview.classList).forEach(function (name) {
      if (name.indexOf(prefix) === 0 && name !== prefix + wanted) {
        preview.classList.remove(name);
      }
    });
    preview.classList.add(prefix + wanted);
  }

  function update() {
    var colour = field("led_color");
    if (COLOUR.test(colour)) {
      preview.style.setProperty("--led", colour);  // CSSOM, not a style attribute: allowed by the CSP
    }
    swap("fx-", field("effect") || "steady");
    swap("font-", field("font") || "default");
    preview.classList.toggle("vibrate", field("vibrate") === "1");
    text.textContent = field("content").trim() || text.getAttribute("data-empty");
    var parts = [colour.toUpperCase(), field("effect"), field("font")];
    if (field("duration_s")) {
      parts.push(field("duration_s") + " s");
    }
    if (field("vibrate") === "1") {
      parts.push("~");
    }
    caption.textContent = parts.join(" · ");
  }

  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
}());
