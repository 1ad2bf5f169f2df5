// Loaded first, before any other script: every error of the page (an uncaught
// exception, a rejected promise, console.error, an asset that failed to load) is kept in
// window.pageErrors and shown in the banner at the top, so that nothing fails silently.
'use strict';
(function () {
  var errors = [];
  window.pageErrors = errors;
  function show(text) {
    errors.push(String(text));
    var banner = document.getElementById('page-errors');
    if (banner) {
      banner.hidden = false;
      banner.textContent = 'Something went wrong on this page: ' + errors[errors.length - 1];
    }
  }
  window.addEventListener('error', function (event) {
    if (event.target && event.target !== window && (event.target.src || event.target.href)) {
      show('could not load ' + (event.target.src || event.target.href));
    } else {
      show(event.message || 'an error');
    }
  }, true);
  window.addEventListener('unhandledrejection', function (event) {
    var reason = event.reason;
    show((reason && reason.message) || String(reason));
  });
  var consoleError = console.error;
  console.error = function () {
    show(Array.prototype.map.call(arguments, String).join(' '));
    return consoleError.apply(console, arguments);
  };
})();
