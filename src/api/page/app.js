// The page: coins, a calendar of days, a price chart and the jobs, all read from the
// public API (GET /api/v1/coins, /days, /prices, /ingestion-jobs, /job-events), and two
// forms that write through it. No framework, no build step.
'use strict';
(function () {
  var TOKEN_KEY = 'price-history.api-token';
  var MAX_JOBS = 20;
  var TERMINAL = ['completed', 'completed_with_gaps', 'failed', 'cancelled'];
  // The letters of GET /api/v1/days, as class names and sentences.
  var STATUS = {
    's': ['stored', 'stored (CoinGecko)'],
    'f': ['second-source', 'stored from the second source (Coinbase Exchange)'],
    'p': ['provisional', 'provisional: stored before the day was over, counts as missing'],
    'm': ['missing', 'missing: a job can fetch it'],
    'o': ['out-of-plan', 'out of plan: older than the CoinGecko plan serves, and in neither source'],
    '-': ['not-expected', "not expected: before the coin's first day, or not yet"]
  };
  var MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  var view = { symbol: null, start: null, end: null, timeframe: '1d', missing: false };
  // The coin on view as GET /api/v1/coins/{symbol} gives it: whether it has hours.
  var viewCoin = null;
  var coins = [];
  // The coin list is read a page at a time (GET /api/v1/coins?limit=&after=&q=), so that it
  // stays quick at ten thousand coins: the rows shown, the filter typed, where the next page starts.
  var COIN_PAGE = 100;
  var coinList = { q: '', tracked: false, next: null, loads: 0 };
  var jobs = new Map();
  var chart = null;
  var viewLoads = 0;

  function $(selector) { return document.querySelector(selector); }

  function el(tag, attributes) {
    var node = document.createElement(tag);
    var names = Object.keys(attributes || {});
    for (var i = 0; i < names.length; i++) {
      var value = attributes[names[i]];
      if (value === null || value === undefined || value === false) continue;
      if (names[i] === 'text') node.textContent = value;
      else node.setAttribute(names[i], value === true ? '' : String(value));
    }
    for (var j = 2; j < arguments.length; j++) {
      var child = arguments[j];
      if (child === null || child === undefined) continue;
      node.append(child);
    }
    return node;
  }

  function isoDay(date) { return date.toISOString().slice(0, 10); }
  function todayUtc() { return isoDay(new Date()); }
  function addDays(day, n) {
    var date = new Date(day + 'T00:00:00Z');
    date.setUTCDate(date.getUTCDate() + n);
    return isoDay(date);
  }

  // ---- the API --------------------------------------------------------------------

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }
  ApiError.prototype.toString = function () {
    return (this.status ? this.status + ' ' : '') + this.code + ': ' + this.message;
  };

  // One call of the API: `{status, data}` with the body parsed as JSON (or, `asText`, the
  // body as it came), or an ApiError with the API's own code and message.
  function api(method, path, body, asText) {
    var headers = { 'Accept': 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (token && method !== 'GET') headers['Authorization'] = 'Bearer ' + token;
    // A read early.js started as the page began to load is taken up, once.
    var early = method === 'GET' && window.earlyReads && window.earlyReads[path];
    if (early) delete window.earlyReads[path];
    return (early || fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    })).catch(function (e) {
      throw new ApiError(0, 'unreachable', 'the service did not answer (' + e.message + ')');
    }).then(function (response) {
      if (asText && response.ok) {
        return response.text().then(function (text) { return { status: response.status, data: text }; });
      }
      return response.json().catch(function () { return null; }).then(function (data) {
        if (!response.ok) {
          throw new ApiError(response.status, (data && data.error) || 'error',
            (data && data.message) || response.statusText);
        }
        return { status: response.status, data: data };
      });
    });
  }

  function query(params) { return new URLSearchParams(params).toString(); }

  // The rows of a CSV answer of GET /api/v1/prices as objects named by its header, with
  // `disputed` and `provisional` as booleans and `hours` as a number (prices stay strings).
  // No field of it is ever quoted: numbers, dates, times, sources and booleans.
  function parseCsv(text) {
    var lines = text.split(/\r?\n/);
    var names = lines[0].split(',');
    var rows = [];
    for (var i = 1; i < lines.length; i++) {
      if (!lines[i]) continue;
      var cells = lines[i].split(',');
      var row = {};
      for (var k = 0; k < names.length; k++) row[names[k]] = cells[k];
      row.disputed = row.disputed === 'true';
      row.provisional = row.provisional === 'true';
      if (row.hours !== undefined) row.hours = Number(row.hours);
      rows.push(row);
    }
    return rows;
  }

  function say(node, text, ok) {
    node.textContent = text;
    node.className = 'result ' + (ok ? 'ok' : 'error');
  }

  // ---- coins ----------------------------------------------------------------------

  // Reads the first page of the list for the filter typed (or, with `more`, the next
  // page, added below the rows shown). A newer read wins over an older one still on its way.
  function loadCoins(more) {
    var load = ++coinList.loads;
    var params = { limit: COIN_PAGE };
    if (coinList.q) params.q = coinList.q;
    if (coinList.tracked) params.tracked = 'true';
    if (more && coinList.next) params.after = coinList.next;
    return api('GET', '/api/v1/coins?' + query(params)).then(function (answer) {
      if (load !== coinList.loads) return;
      coins = more ? coins.concat(answer.data.coins) : answer.data.coins;
      coinList.next = answer.data.next || null;
      renderCoins();
    });
  }

  function renderCoins() {
    var rows = coins.map(function (coin) {
      var tracked = coin.tracked ? 'yes' + (coin.track_since ? ', since ' + coin.track_since : '') : 'no';
      var stale = coin.stale_days === null || coin.stale_days === undefined ? '—' : String(coin.stale_days);
      var staleClass = coin.stale_days > 0 ? 'stale' : (coin.stale_days === 0 ? 'fresh' : null);
      var pick = el('button', { type: 'button', class: 'link', text: coin.symbol, 'aria-label': 'Show ' + coin.symbol });
      pick.addEventListener('click', function () { choose(coin.symbol); });
      return el('tr', { class: coin.symbol === view.symbol ? 'chosen' : null, 'data-symbol': coin.symbol },
        el('td', null, pick),
        el('td', { text: coin.coingecko_id }),
        el('td', { text: coin.first_day || 'unknown' }),
        el('td', { text: tracked }),
        el('td', { text: coin.last_complete_day || 'none' }),
        el('td', { class: staleClass, text: stale }),
        el('td', { class: 'fallback' + (coin.fallback_usable === false ? ' unusable' : ''), 'data-usable': String(coin.fallback_usable), text: describeFallback(coin) }),
        hourlyCell(coin));
    });
    renderFallback();
    $('#coins tbody').replaceChildren.apply($('#coins tbody'), rows);
    $('#coins-more').hidden = !coinList.next;
    $('#coins-count').textContent = coins.length
      ? coins.length + (coinList.next ? '+' : '') + ' coin' + (coins.length === 1 && !coinList.next ? '' : 's') + (coinList.q ? ' matching “' + coinList.q + '”' : '')
      : (coinList.q ? 'No ' + (coinList.tracked ? 'tracked ' : '') + 'coin matches “' + coinList.q + '”.'
        : (coinList.tracked ? 'No coin tracked.' : 'No coin registered.'));
    ['#view-symbol', '#job-symbol'].forEach(function (selector) {
      var select = $(selector);
      var chosen = select.value || view.symbol;
      var symbols = coins.map(function (coin) { return coin.symbol; });
      // The chosen coin stays selectable even when the list shown does not hold it.
      if (chosen && symbols.indexOf(chosen) < 0) symbols.unshift(chosen);
      select.replaceChildren.apply(select, symbols.map(function (symbol) {
        return el('option', { value: symbol, text: symbol });
      }));
      if (chosen) select.value = chosen;
    });
  }

  // The coin's second source in a sentence: its product, how far its closes are from
  // CoinGecko's, and whether it is used (with the reason when not).
  function describeFallback(coin) {
    if (!coin.coinbase_product) return 'none';
    var text = coin.coinbase_product;
    if (coin.fallback_deviation_percent !== null && coin.fallback_deviation_percent !== undefined) {
      text += ', ' + coin.fallback_deviation_percent + ' % from CoinGecko';
    }
    if (coin.fallback_usable === true) return text + ', used';
    if (coin.fallback_usable === false) {
      return text + ', not used' + (coin.fallback_unusable_reason ? ': ' + coin.fallback_unusable_reason : '');
    }
    return text + ', not checked yet';
  }

  // The coin's hours in a sentence: where they come from, how many are disputed and the
  // median distance of CoinGecko's point outside the candles' bands.
  function describeHours(coin, long) {
    var source = coin.hourly_source === 'coinbase' ? 'Coinbase Exchange candles'
      : (coin.hourly_source === 'coingecko' ? "built from CoinGecko's hourly prices" : null);
    var parts = [];
    if (coin.hourly) parts.push(source || 'source not decided yet');
    else if (coin.stored_hours > 0) parts.push('off, ' + coin.stored_hours + ' hours kept');
    else parts.push(long ? 'keeps no hours' : 'off');
    if (coin.disputed_hours > 0 || coin.hourly_median_deviation_percent !== null && coin.hourly_median_deviation_percent !== undefined) {
      parts.push(coin.disputed_hours + ' disputed');
      if (coin.hourly_median_deviation_percent !== null && coin.hourly_median_deviation_percent !== undefined) {
        parts.push('median ' + coin.hourly_median_deviation_percent + ' % outside');
      }
    }
    return (long ? 'Hours: ' : '') + parts.join(', ') + (long ? '.' : '');
  }

  // The coin's "hourly" checkbox: PUT /api/v1/coins/{symbol} with its other settings as
  // they are (a PUT replaces `tracked` and `track_since`).
  function hourlyCell(coin) {
    var box = el('input', { type: 'checkbox', class: 'hourly', checked: coin.hourly, 'aria-label': 'Keep hourly candles of ' + coin.symbol });
    var text = el('span', { class: 'hours-text', text: describeHours(coin, false) });
    box.addEventListener('change', function () {
      box.disabled = true;
      api('PUT', '/api/v1/coins/' + encodeURIComponent(coin.symbol), {
        coingecko_id: coin.coingecko_id, tracked: coin.tracked, track_since: coin.track_since, hourly: box.checked
      }).then(function (answer) {
        coinChanged(answer.data);
      }, function (e) {
        box.checked = !box.checked;
        box.disabled = false;
        text.textContent = String(e);
        text.className = 'hours-text result error';
      });
    });
    return el('td', { class: 'hours', 'data-hourly': String(coin.hourly) }, el('label', { class: 'check' }, box, text));
  }

  function coinChanged(coin) {
    coins = coins.map(function (c) { return c.symbol === coin.symbol ? coin : c; });
    renderCoins();
    if (coin.symbol === view.symbol) {
      viewCoin = coin;
      renderFallback();
      renderTimeframes();
      loadHours(viewLoads);
    }
  }

  // A coin whose job ended: its row read again, the rest of the list (and the pages of
  // it already shown) left as they are.
  function coinRowChanged(symbol) {
    if (!coins.some(function (c) { return c.symbol === symbol; })) return Promise.resolve();
    return api('GET', '/api/v1/coins/' + encodeURIComponent(symbol)).then(function (answer) {
      coins = coins.map(function (c) { return c.symbol === symbol ? answer.data : c; });
      renderCoins();
    });
  }

  // From the view's own coin read where it has come (a coin not on the list's page has
  // no row), else from the list.
  function renderFallback() {
    var coin = viewCoin && viewCoin.symbol === view.symbol ? viewCoin
      : coins.find(function (c) { return c.symbol === view.symbol; });
    var line = $('#view-fallback');
    line.textContent = coin ? 'Second source: ' + describeFallback(coin) + '.' : '';
    line.classList.toggle('unusable', Boolean(coin && coin.fallback_usable === false));
  }

  function wireCoinList() {
    var typing = null;
    $('#coin-search').addEventListener('input', function (event) {
      clearTimeout(typing);
      typing = setTimeout(function () {
        coinList.q = event.target.value.trim();
        loadCoins(false).catch(report);
      }, 200);
    });
    $('#coin-tracked-only').addEventListener('change', function (event) {
      coinList.tracked = event.target.checked;
      loadCoins(false).catch(report);
    });
    $('#coins-more').addEventListener('click', function () {
      loadCoins(true).catch(report);
    });
  }

  function choose(symbol) {
    view.symbol = symbol;
    $('#job-symbol').value = symbol;
    showView();
  }

  // ---- the view: calendar and chart -----------------------------------------------

  function showView() {
    $('#view-symbol').value = view.symbol;
    $('#view-start').value = view.start;
    $('#view-end').value = view.end;
    $('#view-timeframe').value = view.timeframe;
    $('#view-symbol-name').textContent = view.symbol;
    var rows = document.querySelectorAll('#coins tbody tr');
    for (var i = 0; i < rows.length; i++) {
      rows[i].classList.toggle('chosen', rows[i].getAttribute('data-symbol') === view.symbol);
    }
    var params = { symbol: view.symbol, start_date: view.start, end_date: view.end };
    if (view.timeframe !== '1d') params.timeframe = view.timeframe;
    history.replaceState(null, '', '?' + query(params));
    renderFallback();
    return loadView();
  }

  // Every read of the view starts at once; the chart is drawn first, and the calendar
  // and the coin's hours only once it is on screen, so that they never delay it.
  function loadView() {
    var load = ++viewLoads;
    var params = query({ symbol: view.symbol, start_date: view.start, end_date: view.end });
    var days = api('GET', '/api/v1/days?' + params);
    var coin = api('GET', '/api/v1/coins/' + encodeURIComponent(view.symbol));
    var drawn = loadChart(load);
    var calendar = Promise.all([days, drawn]).then(function (answers) {
      if (load === viewLoads) renderCalendar(answers[0].data);
    });
    var hours = Promise.all([coin, drawn]).then(function (answers) {
      if (load !== viewLoads) return;
      viewCoin = answers[0].data;
      view.missing = false;
      renderFallback();
      renderTimeframes();
      return loadHours(load);
    }, function (e) {
      if (e.status !== 404) throw e;
      if (load !== viewLoads) return;
      viewCoin = null;
      view.missing = true;
      renderTimeframes();
    });
    return Promise.all([calendar, hours]).catch(function (e) {
      $('#calendar-summary').textContent = 'Could not read the history: ' + e;
    });
  }

  // Reads and draws the candles of the view's timeframe; settles once they are on screen
  // (or the read failed). In CSV: half the bytes of JSON, and the server writes it in
  // half the time (a year of hours: 0.8 MB against 1.8 MB).
  function loadChart(load) {
    var timeframe = view.timeframe;
    // Hours are read over 1461 days at most (the API's longest read in hours): the last
    // ones of a longer view, as the hours layer does.
    var start = timeframe !== '1d' ? hoursStart() : view.start;
    var params = { symbol: view.symbol, start_date: start, end_date: view.end };
    if (timeframe !== '1d') params.timeframe = timeframe;
    params.format = 'csv';
    return api('GET', '/api/v1/prices?' + query(params), undefined, true).then(function (answer) {
      if (load !== viewLoads || timeframe !== view.timeframe) return;
      var prices = parseCsv(answer.data);
      performance.mark('prices-read');
      $('#chart-error').textContent = '';
      return renderChart(prices, timeframe);
    }, function (e) {
      // A read of a timeframe left meanwhile blanks nothing of the one on screen.
      if (load !== viewLoads || timeframe !== view.timeframe) return;
      $('#chart-error').textContent = 'Could not read the ' + timeframe + ' candles: ' + e;
      // Nothing of another coin, range or timeframe stays on screen under this one's title.
      return renderChart([], timeframe);
    });
  }

  // The first day of hours to read: 1460 days before the view's end when the view is
  // longer. An end that is no date (`2026-13-01`) leaves the start as it is, and the API's
  // 400 says what is wrong with the end.
  function hoursStart() {
    if (isNaN(new Date(view.end + 'T00:00:00Z').getTime())) return view.start;
    var earliest = addDays(view.end, -1460);
    return view.start < earliest ? earliest : view.start;
  }

  function hasHours(coin) {
    return Boolean(coin && (coin.hourly || coin.stored_hours > 0));
  }

  // 4h and 1h are offered for a coin that keeps hours or has hours stored; a coin
  // without any goes back to days.
  function renderTimeframes() {
    var offered = hasHours(viewCoin);
    var select = $('#view-timeframe');
    select.setAttribute('data-offered', String(offered));
    var options = select.options;
    for (var i = 0; i < options.length; i++) {
      if (options[i].value !== '1d') options[i].disabled = !offered;
    }
    $('#view-hours-source').textContent = viewCoin ? describeHours(viewCoin, true) : '';
    if (!offered && view.timeframe !== '1d') switchTimeframe('1d');
  }

  function switchTimeframe(timeframe) {
    view.timeframe = timeframe;
    $('#view-timeframe').value = timeframe;
    var params = { symbol: view.symbol, start_date: view.start, end_date: view.end };
    if (timeframe !== '1d') params.timeframe = timeframe;
    history.replaceState(null, '', '?' + query(params));
    return loadChart(viewLoads);
  }

  function renderCalendar(data) {
    var letters = data.statuses;
    var calendar = $('#calendar');
    var fragment = document.createDocumentFragment();
    var month = null;
    var grid = null;
    var date = new Date(data.start_date + 'T00:00:00Z');
    for (var i = 0; i < letters.length; i++) {
      var day = isoDay(date);
      if (day.slice(0, 7) !== month) {
        month = day.slice(0, 7);
        grid = el('div', { class: 'month-grid' });
        var weekday = (date.getUTCDay() + 6) % 7;
        for (var k = 0; k < weekday; k++) grid.append(el('span', { class: 'pad', 'aria-hidden': 'true' }));
        fragment.append(el('div', { class: 'month' },
          el('div', { class: 'month-name', text: MONTHS[date.getUTCMonth()] + ' ' + date.getUTCFullYear() }),
          grid));
      }
      var status = STATUS[letters[i]] || STATUS['-'];
      var text = day + ': ' + status[1];
      grid.append(el('span', { class: 'day ' + status[0], 'data-status': status[0], 'data-date': day, title: text, role: 'img', 'aria-label': text }));
      date.setUTCDate(date.getUTCDate() + 1);
    }
    calendar.replaceChildren(fragment);
    // The counts as attributes too, for scripts and tests: data-stored="358" ...
    Object.keys(data.counts).forEach(function (name) {
      calendar.setAttribute('data-' + name.replace(/_/g, '-'), String(data.counts[name]));
    });
    calendar.setAttribute('data-range', data.start_date + '/' + data.end_date);

    var c = data.counts;
    var summary = c.stored + ' stored, ' + c.second_source + ' from the second source, ' + c.provisional + ' provisional, ' + c.missing + ' missing, ' +
      c.out_of_plan + ' out of plan';
    if (data.plan_first_day) summary += ' (the CoinGecko plan serves ' + data.plan_first_day + ' on)';
    if (data.first_day) summary += '; first day of data ' + data.first_day;
    $('#calendar-summary').textContent = summary + '.';
    renderRuns(data);
  }

  // Runs of consecutive missing (or provisional) days, and of out-of-plan days.
  function renderRuns(data) {
    var runs = [];
    var letters = data.statuses;
    var i = 0;
    while (i < letters.length) {
      var kind = letters[i] === 'm' || letters[i] === 'p' ? 'gap' : (letters[i] === 'o' ? 'out' : null);
      var j = i;
      while (j + 1 < letters.length && kind !== null &&
        (kind === 'gap' ? (letters[j + 1] === 'm' || letters[j + 1] === 'p') : letters[j + 1] === 'o')) j++;
      if (kind) runs.push({ kind: kind, first: addDays(data.start_date, i), last: addDays(data.start_date, j), days: j - i + 1 });
      i = j + 1;
    }
    var items = runs.slice(0, 200).map(function (run) {
      var span = run.first === run.last ? run.first : run.first + ' to ' + run.last;
      var what = run.kind === 'gap' ? 'missing' : 'out of plan';
      return el('li', { class: 'run ' + run.kind, text: span + ' (' + run.days + ' day' + (run.days === 1 ? '' : 's') + ', ' + what + ')' });
    });
    if (runs.length > 200) items.push(el('li', { text: 'and ' + (runs.length - 200) + ' more runs' }));
    if (!runs.length) items.push(el('li', { text: 'None: every expected day is stored.' }));
    $('#gap-runs').replaceChildren.apply($('#gap-runs'), items);
    $('#gaps summary').textContent = 'Gap runs (' + runs.length + ')';
  }

  // ---- the hours: where they are missing ----------------------------------------

  // A coin with hours gets a layer of its own under the calendar: each day of the view
  // (its last 1461 days at most, the longest read in hours) by how many of its hours are
  // missing, from the calendar's data in hours (GET /api/v1/days?timeframe=1h).
  function loadHours(load) {
    var layer = $('#hours');
    if (!hasHours(viewCoin)) {
      layer.hidden = true;
      return null;
    }
    var params = query({ symbol: view.symbol, start_date: hoursStart(), end_date: view.end, timeframe: '1h' });
    return api('GET', '/api/v1/days?' + params).then(function (answer) {
      if (load !== viewLoads) return;
      layer.hidden = false;
      renderHours(answer.data);
    }, function (e) {
      if (load !== viewLoads) return;
      layer.hidden = false;
      $('#hours-summary').textContent = 'Could not read the hours: ' + e;
      $('#hours-calendar').replaceChildren();
    });
  }

  // One day's hours in words, and the kind of cell that shows them.
  function dayHours(hours, i) {
    var expected = hours.expected[i];
    var missing = hours.missing[i];
    var kind = expected === 0 ? 'not-expected' : (missing === 0 ? 'complete' : (missing >= expected ? 'none' : 'partial'));
    var text = expected === 0 ? 'no hours expected' : hours.stored[i] + ' of ' + expected + ' hours stored' +
      (hours.without_trades[i] ? ', ' + hours.without_trades[i] + ' without trades' : '') +
      (missing ? ', ' + missing + ' missing' + (hours.provisional[i] ? ' (' + hours.provisional[i] + ' provisional)' : '') : '') +
      (hours.disputed[i] ? ', ' + hours.disputed[i] + ' disputed' : '');
    return { kind: kind, text: text, missing: missing };
  }

  function renderHours(data) {
    var hours = data.hours;
    if (!hours) {
      $('#hours-summary').textContent = 'This server does not count hours per day.';
      return;
    }
    var fragment = document.createDocumentFragment();
    var sums = { expected: 0, stored: 0, without_trades: 0, missing: 0, disputed: 0 };
    var day = data.start_date;
    for (var i = 0; i < hours.expected.length; i++, day = addDays(day, 1)) {
      Object.keys(sums).forEach(function (name) { sums[name] += hours[name][i]; });
      var shown = dayHours(hours, i);
      var text = day + ': ' + shown.text;
      fragment.append(el('span', { class: 'day hours-' + shown.kind, 'data-date': day, 'data-missing': shown.missing, title: text, role: 'img', 'aria-label': text }));
    }
    var calendar = $('#hours-calendar');
    calendar.replaceChildren(fragment);
    calendar.setAttribute('data-range', data.start_date + '/' + data.end_date);
    Object.keys(sums).forEach(function (name) {
      calendar.setAttribute('data-' + name.replace(/_/g, '-'), String(sums[name]));
    });
    $('#hours-summary').textContent = sums.stored + ' of ' + sums.expected + ' hours stored, ' +
      sums.without_trades + ' without trades, ' + sums.missing + ' missing, ' + sums.disputed + ' disputed (' +
      data.start_date + ' to ' + data.end_date + ').';
  }

  function ensureChart() {
    if (!chart) chart = window.PriceChart.create($('#chart'), $('#chart-legend'), $('#chart-readout'));
    return chart;
  }

  // Draws the candles; settles once they are on screen.
  function renderChart(prices, timeframe) {
    var drawn = window.PriceChart.draw(ensureChart(), prices, timeframe);
    // Marks for the page's benchmark: where the time to a drawn chart goes.
    performance.mark('candles-set');
    $('#chart-empty').hidden = drawn > 0;
    // Lightweight Charts paints on the next frame; the frame after that has it on screen.
    return new Promise(function (resolve) {
      requestAnimationFrame(function () {
        requestAnimationFrame(function () {
          window.chartDrawnAt = performance.now();
          performance.mark('chart-drawn');
          document.body.setAttribute('data-chart-timeframe', timeframe);
          document.body.setAttribute('data-chart-candles', String(drawn));
          resolve();
        });
      });
    });
  }

  // What the chart holds (its axis, marks and volume series), for scripts and tests.
  window.chartState = function () { return chart ? window.PriceChart.state(chart) : null; };

  // ---- jobs -----------------------------------------------------------------------

  function isTerminal(status) { return TERMINAL.indexOf(status) >= 0; }

  // The newest jobs, and every running one however many are queued after it (a tick or
  // an import queues hundreds, and the one running is the oldest); a job already known
  // from a newer event keeps it.
  function loadJobs() {
    return Promise.all([
      api('GET', '/api/v1/ingestion-jobs?limit=' + MAX_JOBS),
      api('GET', '/api/v1/ingestion-jobs?status=running&limit=100')
    ]).then(function (answers) {
      answers.forEach(function (answer) { answer.data.jobs.forEach(keepNewer); });
      renderJobs();
    });
  }

  function keepNewer(job) {
    var before = jobs.get(job.id);
    if (before && Date.parse(before.updated_at) > Date.parse(job.updated_at)) return;
    jobs.set(job.id, job);
  }

  function jobChanged(job) {
    var before = jobs.get(job.id);
    if (before && Date.parse(before.updated_at) > Date.parse(job.updated_at)) return;
    jobs.set(job.id, job);
    renderJobs();
    var ended = isTerminal(job.status) && !(before && isTerminal(before.status));
    if (ended) {
      coinRowChanged(job.symbol).catch(report);
      if (job.symbol === view.symbol) loadView();
    }
  }

  // Running jobs first (never dropped), then the newest others, MAX_JOBS of them.
  function renderJobs() {
    var newest = function (a, b) {
      return Date.parse(b.created_at) - Date.parse(a.created_at) || (a.id < b.id ? 1 : -1);
    };
    var all = Array.from(jobs.values());
    var running = all.filter(function (job) { return job.status === 'running'; }).sort(newest);
    var others = all.filter(function (job) { return job.status !== 'running'; }).sort(newest);
    others.slice(MAX_JOBS).forEach(function (job) { jobs.delete(job.id); });
    var list = running.concat(others.slice(0, MAX_JOBS));
    $('#jobs').replaceChildren.apply($('#jobs'), list.map(renderJob));
    $('#jobs-empty').hidden = list.length > 0;
  }

  function renderJob(job) {
    var done = job.progress.chunks_done;
    var total = job.progress.chunks_total;
    var finished = isTerminal(job.status) && job.status !== 'failed' && job.status !== 'cancelled';
    // A job with nothing to fetch has no windows: once finished it is all done.
    var max = Math.max(total, done, 1);
    var value = finished ? max : Math.min(done, max);
    var progressText = total > 0 ? done + ' of ' + total + (total === 1 ? ' window' : ' windows') : (finished ? 'nothing to fetch' : 'planning');
    var facts = [
      job.records_fetched + ' days fetched',
      job.gaps_detected + ' gap' + (job.gaps_detected === 1 ? '' : 's'),
      job.out_of_plan_days + ' out of plan',
      (job.fallback_days || 0) + ' from the second source',
      'attempt ' + job.attempts,
      'created ' + job.created_at.replace('T', ' ').slice(0, 19) + ' UTC'
    ].join(' · ');
    var item = el('li', { class: 'job', 'data-id': job.id, 'data-status': job.status },
      el('div', { class: 'job-head' },
        el('strong', { text: job.symbol }),
        el('span', { class: 'job-range', text: job.start_date + ' → ' + job.end_date + (job.force ? ' (force)' : '') }),
        el('span', { class: 'badge status-' + job.status, text: job.status.replace(/_/g, ' ') }),
        el('span', { class: 'trigger', text: 'by ' + job.trigger })),
      el('progress', { max: max, value: value, 'aria-label': 'Progress of job ' + job.id }),
      el('div', { class: 'job-facts' }, el('span', { class: 'progress-text', text: progressText }), ' · ' + facts),
      job.error_message ? el('p', { class: 'job-message', text: job.error_message }) : null,
      job.gap_dates.length ? el('p', { class: 'job-message', text: 'Gaps: ' + job.gap_dates.slice(0, 10).join(', ') + (job.gap_dates.length > 10 ? ' …' : '') }) : null);
    if (!isTerminal(job.status)) {
      var cancel = el('button', { type: 'button', class: 'secondary', text: 'Cancel' });
      cancel.addEventListener('click', function () {
        api('POST', '/api/v1/ingestion-jobs/' + job.id + '/cancel').then(function (answer) {
          jobChanged(answer.data);
        }, function (e) { say($('#job-result'), String(e), false); });
      });
      item.append(cancel);
    }
    return item;
  }

  // Server-sent events: each committed change of a job, as it happens. On every
  // (re)connection the list is read again, so nothing missed meanwhile stays stale.
  function follow() {
    var live = $('#live');
    var source = new EventSource('/api/v1/job-events');
    var retry = null;
    // Closed as the page goes: left open, each page left behind kept one of the browser's
    // six connections to the service, and the seventh page opened in a tab waited about a
    // minute for one.
    window.addEventListener('pagehide', function () { source.close(); });
    source.onopen = function () {
      live.textContent = 'live';
      live.className = 'live on';
      loadJobs().catch(report);
    };
    source.onmessage = function (event) { jobChanged(JSON.parse(event.data)); };
    source.onerror = function () {
      live.textContent = 'reconnecting…';
      live.className = 'live';
      // A refused stream (503: every stream taken, or no database) is not retried by the
      // browser: the list is read now, and the stream asked for again in 30 s.
      if (source.readyState === EventSource.CLOSED && retry === null) {
        loadJobs().catch(report);
        retry = setTimeout(follow, 30000);
      }
    };
  }

  // ---- forms ----------------------------------------------------------------------

  function wireForms() {
    var token = $('#token');
    token.value = sessionStorage.getItem(TOKEN_KEY) || '';
    token.addEventListener('input', function () {
      if (token.value) sessionStorage.setItem(TOKEN_KEY, token.value);
      else sessionStorage.removeItem(TOKEN_KEY);
    });
    $('#token-form').addEventListener('submit', function (event) { event.preventDefault(); });

    $('#view-form').addEventListener('submit', function (event) {
      event.preventDefault();
      view.symbol = $('#view-symbol').value;
      view.start = $('#view-start').value;
      view.end = $('#view-end').value;
      view.timeframe = $('#view-timeframe').value;
      showView();
    });
    $('#view-timeframe').addEventListener('change', function (event) {
      switchTimeframe(event.target.value);
    });
    $('#view-last-year').addEventListener('click', function () {
      view.end = todayUtc();
      view.start = addDays(view.end, -364);
      showView();
    });

    $('#job-form').addEventListener('submit', function (event) {
      event.preventDefault();
      var result = $('#job-result');
      var button = event.target.querySelector('button');
      button.disabled = true;
      say(result, 'Submitting…', true);
      api('POST', '/api/v1/ingestion-jobs', {
        symbol: $('#job-symbol').value,
        start_date: $('#job-start').value,
        end_date: $('#job-end').value,
        force: $('#job-force').checked
      }).then(function (answer) {
        say(result, 'Queued job ' + answer.data.id + '.', true);
        jobChanged(answer.data);
      }, function (e) {
        say(result, String(e), false);
      }).then(function () { button.disabled = false; });
    });

    // A symbol typed that is registered already: the form shows its settings.
    $('#coin-symbol').addEventListener('change', function (event) {
      var symbol = event.target.value.trim().toUpperCase();
      if (!/^[A-Z0-9]{1,15}$/.test(symbol)) return;
      api('GET', '/api/v1/coins/' + encodeURIComponent(symbol)).then(function (answer) {
        if ($('#coin-symbol').value.trim().toUpperCase() !== symbol) return;
        fillCoinForm(answer.data);
        say($('#coin-result'), symbol + ' is registered: the form shows its settings, and saving changes only what you change.', true);
      }, function (e) {
        if (e.status !== 404) report(e);
      });
    });

    $('#coin-form').addEventListener('submit', function (event) {
      event.preventDefault();
      var result = $('#coin-result');
      var button = event.target.querySelector('button');
      var symbol = $('#coin-symbol').value.trim().toUpperCase();
      button.disabled = true;
      say(result, 'Saving… (a new coin is checked with CoinGecko)', true);
      var body = {
        coingecko_id: $('#coin-id').value.trim(),
        tracked: $('#coin-tracked').checked,
        track_since: $('#coin-since').value || null
      };
      // Empty leaves the product unsaid (guessed for a new coin, kept for a registered
      // one); "none" clears it.
      var product = $('#coin-product').value.trim();
      if (product) body.coinbase_product = product.toLowerCase() === 'none' ? null : product;
      api('PUT', '/api/v1/coins/' + encodeURIComponent(symbol), body).then(function (answer) {
        var coin = answer.data;
        var warning = coin.tracking_cost && coin.tracking_cost.warning;
        say(result, (answer.status === 201 ? 'Registered ' : 'Updated ') + coin.symbol +
          ' (first day ' + (coin.first_day || 'unknown') + ', ' + (coin.tracked ? 'tracked' : 'not tracked') +
          ', second source ' + describeFallback(coin) + ').' + (warning ? ' Warning: ' + warning : ''), true);
        return loadCoins(false);
      }, function (e) {
        say(result, String(e), false);
      }).then(function () { button.disabled = false; });
    });
  }

  // A registered coin's settings put into the coin form, so that saving it changes only
  // what is changed there (a PUT without `tracked` untracks the coin).
  function fillCoinForm(coin) {
    if (!coin) return;
    $('#coin-symbol').value = coin.symbol;
    $('#coin-id').value = coin.coingecko_id;
    $('#coin-tracked').checked = Boolean(coin.tracked);
    $('#coin-since').value = coin.track_since || '';
  }

  function report(e) { console.error('price-history: ' + e); }

  // ---- start ----------------------------------------------------------------------

  // The view comes from the address, as early.js read it (its reads already under way).
  // The chart goes first; the jobs and the coin list follow once it is drawn, and a coin
  // that is not registered gives way to the first one that is.
  function start() {
    performance.mark('app-start');
    var early = window.earlyView;
    view.symbol = early.symbol;
    view.start = early.start;
    view.end = early.end;
    view.timeframe = early.timeframe;
    $('#job-end').value = addDays(todayUtc(), -1);
    $('#job-start').value = addDays(todayUtc(), -30);
    wireForms();
    wireCoinList();
    // The chart is made now, while the prices are still on their way: its canvases and
    // axes are laid out by the time they arrive.
    ensureChart();
    showView().then(function () {
      follow();
      return loadCoins(false);
    }).then(function () {
      if (view.missing && coins.length) choose(coins[0].symbol);
    }).catch(report);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
