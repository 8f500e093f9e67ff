// The console works without this file; with it, the environment selector and filters apply
// on change, and a decision asks for confirmation first. No inline script: the page's
// Content-Security-Policy forbids it.
document.documentElement.classList.add("js");
document.addEventListener("change", function (event) {
  var field = event.target;
  if (field.matches && field.matches("[data-autosubmit]") && field.form) {
    field.form.requestSubmit();
  }
});
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("button[data-confirm]");
  if (button && !window.confirm(button.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});
