// Reloads the page every data-refresh seconds (the console's overview); nothing else.
(function () {
  var s = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (s > 0) {
    setTimeout(function () { window.location.reload(); }, s * 1000);
  }
})();
