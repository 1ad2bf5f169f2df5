// The price chart (Lightweight Charts): candles of one timeframe (1d, 4h or 1h), disputed
// candles marked, each source's volume in a pane of its own on a scale of its own, a
// legend that says what each volume measures, and a readout under the crosshair. app.js
// hands it the rows of GET /api/v1/prices (from its CSV); it reads nothing itself.
//
// Why a pane per source: CoinGecko's volume is the whole market's 24-hour volume,
// Coinbase's one exchange's, often 10-100x smaller. On one scale the place where the
// sources meet looks like a market event; in panes of their own it shows as what it is,
// one series ending and another beginning.
'use strict';
window.PriceChart = (function () {
  var SOURCES = {
    coingecko: {
      name: 'CoinGecko', color: 'rgba(100,116,139,.6)',
      says: "the whole market's 24-hour volume (every exchange CoinGecko follows), in USD"
    },
    coinbase: {
      name: 'Coinbase Exchange', color: 'rgba(37,99,235,.6)',
      says: "one exchange's volume over the candle, in USD: often 10-100x less than CoinGecko's"
    },
    mixed: {
      name: 'both sources', color: 'rgba(147,51,234,.5)',
      says: "4-hour blocks whose hours come from both sources: a sum of unlike figures"
    }
  };
  var UP = '#15803d';
  var DOWN = '#dc2626';
  var DISPUTED = '#c026d3';
  var PROVISIONAL = '#9ca3af';
  // Hours and four-hour blocks open on their latest 720 (30 days of 1h, 120 of 4h), wide
  // enough to read; the rest are a drag or a zoom away. Days open on the whole range.
  var HOURS_SHOWN = 720;

  // The price axis never runs below zero: the range is the candles' own, padded by 6 %,
  // with the padding under the lowest low cut at zero. The scale's margins are zero, so
  // this range is exactly what the axis shows.
  function nonNegative(original) {
    var info = original();
    if (!info || !info.priceRange) return info;
    var low = info.priceRange.minValue;
    var high = info.priceRange.maxValue;
    var pad = (high - low) * 0.06 || Math.abs(high) * 0.05 || 1;
    info.priceRange = { minValue: Math.max(0, low - pad), maxValue: high + pad };
    return info;
  }

  // The row's time in seconds since the epoch: `date` (1d) or `time` (1h, 4h). Both are
  // UTC, so the chart's axis reads in UTC too.
  function seconds(row) {
    return Date.parse(row.time || row.date + 'T00:00:00Z') / 1000;
  }

  function candleColor(row, timeframe, up) {
    if (row.disputed) return DISPUTED;
    if (row.provisional) return PROVISIONAL;
    if (timeframe === '1d' && row.source === 'coinbase') return up ? '#60a5fa' : '#1e40af';
    if (timeframe !== '1d' && row.source === 'coingecko') return up ? '#2dd4bf' : '#0f766e';
    return null;
  }

  function create(container, legend, readout) {
    var LC = window.LightweightCharts;
    // Drawn first at the container's size as it is, then kept to it by a ResizeObserver:
    // with Lightweight Charts' autoSize the first paint waited a frame for the observer's
    // first answer.
    var chart = LC.createChart(container, {
      width: container.clientWidth,
      height: container.clientHeight,
      layout: { background: { color: '#ffffff' }, textColor: '#1f2933', panes: { separatorColor: '#d5dbe3' } },
      grid: { vertLines: { color: '#eef1f5' }, horzLines: { color: '#eef1f5' } },
      rightPriceScale: { borderVisible: false },
      timeScale: { borderVisible: false }
    });
    var candles = chart.addSeries(LC.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
      autoscaleInfoProvider: nonNegative
    });
    candles.priceScale().applyOptions({ scaleMargins: { top: 0, bottom: 0 } });
    var marks = LC.createSeriesMarkers(candles, []);
    var self = {
      width: container.clientWidth, height: container.clientHeight,
      chart: chart, candles: candles, marks: marks, volumes: [], rows: [], times: null,
      timeframe: '1d', legend: legend, readout: readout
    };
    chart.subscribeCrosshairMove(function (param) { showReadout(self, param); });
    new ResizeObserver(function (entries) {
      var box = entries[0].contentRect;
      var width = Math.floor(box.width);
      var height = Math.floor(box.height);
      if (width !== self.width || height !== self.height) chart.resize(width, height);
      self.width = width;
      self.height = height;
    }).observe(container);
    return self;
  }

  // Draws `rows` (ascending) of `timeframe`; returns how many candles it drew.
  function draw(self, rows, timeframe) {
    var n = rows.length;
    var bars = new Array(n);
    var times = new Float64Array(n);
    var perSource = {};
    var order = [];
    var disputed = [];
    for (var i = 0; i < n; i++) {
      var row = rows[i];
      var time = seconds(row);
      var open = +row.open;
      var close = +row.close;
      var bar = { time: time, open: open, high: +row.high, low: +row.low, close: close };
      var color = candleColor(row, timeframe, close >= open);
      if (color) {
        bar.color = color;
        bar.wickColor = color;
      }
      bars[i] = bar;
      times[i] = time;
      var source = row.source;
      if (!perSource[source]) {
        perSource[source] = [];
        order.push(source);
      }
      perSource[source].push({ time: time, value: +row.volume });
      if (row.disputed) {
        disputed.push({ time: time, position: 'aboveBar', shape: 'arrowDown', color: DISPUTED });
      }
    }
    self.rows = rows;
    self.times = times;
    self.timeframe = timeframe;
    self.chart.applyOptions({ timeScale: { timeVisible: timeframe !== '1d', secondsVisible: false } });
    self.candles.setData(bars);
    self.marks.setMarkers(disputed);
    drawVolumes(self, perSource, order);
    if (timeframe !== '1d' && n > HOURS_SHOWN) {
      self.chart.timeScale().setVisibleLogicalRange({ from: n - HOURS_SHOWN, to: n + 1 });
    } else {
      self.chart.timeScale().fitContent();
    }
    renderLegend(self, order, disputed.length);
    return n;
  }

  // One histogram per source, each in its own pane below the candles, on its own scale
  // that starts at zero.
  function drawVolumes(self, perSource, order) {
    var LC = window.LightweightCharts;
    self.volumes.forEach(function (entry) { self.chart.removeSeries(entry.series); });
    self.volumes = order.map(function (source, k) {
      var look = SOURCES[source] || SOURCES.mixed;
      var series = self.chart.addSeries(LC.HistogramSeries, {
        color: look.color, priceFormat: { type: 'volume' }, lastValueVisible: false,
        priceLineVisible: false, title: look.name
      }, k + 1);
      series.priceScale().applyOptions({ scaleMargins: { top: 0.15, bottom: 0 } });
      series.setData(perSource[source]);
      return { source: source, series: series, points: perSource[source].length };
    });
    var panes = self.chart.panes();
    panes[0].setStretchFactor(Math.max(2, 2 * self.volumes.length));
    for (var p = 1; p < panes.length; p++) panes[p].setStretchFactor(1);
  }

  function renderLegend(self, order, disputed) {
    var items = order.map(function (source) {
      var look = SOURCES[source] || SOURCES.mixed;
      var text = 'Volume from ' + look.name + ': ' + look.says + '.';
      var item = document.createElement('li');
      item.setAttribute('data-source', source);
      item.title = text + ' Each source has its own pane and scale: where one ends and the other begins is a change of source, not of the market.';
      var swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = look.color;
      item.append(swatch, text);
      return item;
    });
    if (disputed) {
      var item = document.createElement('li');
      item.setAttribute('data-disputed', String(disputed));
      var mark = document.createElement('span');
      mark.className = 'swatch disputed';
      item.append(mark, disputed + ' disputed candle' + (disputed === 1 ? '' : 's') +
        ": CoinGecko's price in the hour lies outside the candle's low-high band (marked ▼).");
      items.push(item);
    }
    self.legend.replaceChildren.apply(self.legend, items);
  }

  // The row under the crosshair, in words: its prices, its volume and what that measures.
  function showReadout(self, param) {
    if (!param || param.time === undefined || !self.times) {
      self.readout.textContent = '';
      return;
    }
    var index = binarySearch(self.times, param.time);
    var row = index < 0 ? null : self.rows[index];
    if (!row) {
      self.readout.textContent = '';
      return;
    }
    var look = SOURCES[row.source] || SOURCES.mixed;
    var when = row.date || row.time.replace('T', ' ').slice(0, 16) + ' UTC';
    self.readout.textContent = when + ' · O ' + row.open + ' H ' + row.high + ' L ' + row.low + ' C ' + row.close +
      ' · volume ' + Math.round(+row.volume).toLocaleString('en') + ' USD from ' + look.name + ' (' + look.says + ')' +
      (self.timeframe === '4h' ? ' · ' + row.hours + ' of 4 hours' : '') +
      (row.disputed ? " · disputed: CoinGecko's price lies outside this candle's band" : '') +
      (row.provisional ? ' · provisional' : '');
  }

  function binarySearch(times, time) {
    var low = 0;
    var high = times.length - 1;
    while (low <= high) {
      var middle = (low + high) >> 1;
      if (times[middle] < time) low = middle + 1;
      else if (times[middle] > time) high = middle - 1;
      else return middle;
    }
    return -1;
  }

  // What the chart holds, for scripts and tests: the prices at the bottom and the top
  // edge of the candles' pane (what the axis shows, margins included), the disputed
  // marks, and each volume series with its pane.
  function state(self) {
    var height = self.chart.panes()[0].getHeight();
    return {
      timeframe: self.timeframe,
      candles: self.candles.data().length,
      disputed: self.marks.markers().length,
      axis: { from: self.candles.coordinateToPrice(height), to: self.candles.coordinateToPrice(0) },
      panes: self.chart.panes().length,
      volumes: self.volumes.map(function (entry) {
        return { source: entry.source, points: entry.points, pane: entry.series.getPane().paneIndex() };
      })
    };
  }

  return { create: create, draw: draw, state: state };
})();
