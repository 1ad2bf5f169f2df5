// Run as the page begins to load, before the chart library (194 KiB) is even parsed: reads
// the view from the address (coin, range, timeframe; BTC's last year of days unless it
// says otherwise) and starts the reads the first screen needs, so the server answers
// while the browser is still loading scripts. app.js takes the view and the answers up
// (window.earlyView, and api() looks in window.earlyReads before it fetches).
'use strict';
(function () {
  var TIMEFRAMES = ['1d', '4h', '1h'];
  function isoDay(date) { return date.toISOString().slice(0, 10); }
  var params = new URLSearchParams(location.search);
  var end = params.get('end_date') || isoDay(new Date());
  var start = params.get('start_date');
  if (!start) {
    var date = new Date(end + 'T00:00:00Z');
    // A malformed end (`2026-13-01`) is no date: the year before today, and the API's
    // own 400 for the end given says what was wrong with it.
    if (isNaN(date.getTime())) date = new Date(isoDay(new Date()) + 'T00:00:00Z');
    date.setUTCDate(date.getUTCDate() - 364);
    start = isoDay(date);
  }
  var view = {
    symbol: (params.get('symbol') || 'BTC').toUpperCase(),
    start: start,
    end: end,
    timeframe: TIMEFRAMES.indexOf(params.get('timeframe')) >= 0 ? params.get('timeframe') : '1d'
  };
  window.earlyView = view;
  window.earlyReads = {};
  // The same paths, in the same order of parameters, as app.js asks for them.
  var range = { symbol: view.symbol, start_date: view.start, end_date: view.end };
  var prices = Object.assign({}, range);
  if (view.timeframe !== '1d') {
    prices.timeframe = view.timeframe;
    // Hours over 1461 days at most, as app.js reads them (its hoursStart).
    var last = new Date(view.end + 'T00:00:00Z');
    if (!isNaN(last.getTime())) {
      last.setUTCDate(last.getUTCDate() - 1460);
      if (view.start < isoDay(last)) prices.start_date = isoDay(last);
    }
  }
  prices.format = 'csv';
  [
    '/api/v1/prices?' + new URLSearchParams(prices),
    '/api/v1/days?' + new URLSearchParams(range),
    '/api/v1/coins/' + encodeURIComponent(view.symbol)
  ].forEach(function (path) {
    var read = fetch(path, { headers: { 'Accept': 'application/json' } });
    // app.js handles a failure when it takes the read up; none is left unhandled here.
    read.catch(function () {});
    window.earlyReads[path] = read;
  });
})();
