//! The page's rows: what a browser downloads for `/`, how soon four years of one coin's
//! days and one year of its hours are drawn as candles, and the server time of the
//! calendar's data for twenty years.
//! In a real headless Chromium (the same WebDriver helper as the page test), against an
//! `api` process of its own on a database of its own.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{Days, Utc};

use super::{Bench, Report, Sizes, free_port, ms, spawn, terminate, with_database};

#[path = "../../tests/it/browser.rs"]
#[allow(dead_code)]
mod browser;

/// Sizes of the page rows.
struct PageSizes {
    chart_days: u64,
    /// Days of hourly candles drawn in the `1h` row (365: 8,760 candles).
    hour_days: u64,
    calendar_days: u64,
    loads: usize,
    requests: usize,
}

impl PageSizes {
    fn of(sizes: &Sizes) -> Self {
        PageSizes {
            chart_days: sizes.pick(1461, 60),
            hour_days: sizes.pick(365, 7),
            calendar_days: sizes.pick(7305, 365),
            loads: sizes.pick(7, 1),
            requests: sizes.pick(100, 5),
        }
    }
}

impl Bench {
    /// The page rows.
    pub(super) async fn page(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let page_sizes = PageSizes::of(sizes);
        let database = format!("{}_page", self.database);
        let url = with_database(&self.admin_url, &database)?;
        let result = self.page_rows(&url, &page_sizes, report).await;
        self.drop_database(&database).await;
        result
    }

    async fn page_rows(&self, url: &str, sizes: &PageSizes, report: &mut Report) -> Result<()> {
        let pool = price_history::startup::connect_and_migrate(&url.parse()?, 4).await?;
        let today = Utc::now().date_naive();
        let day = |n: u64| today.checked_sub_days(Days::new(n)).expect("a date");
        // A coin with twenty years of history (one hole a month), and BTC's last four years.
        sqlx::query(
            "INSERT INTO coins (symbol, coingecko_id, first_day) VALUES ('LONG', 'long-history', $1)",
        )
        .bind(day(sizes.calendar_days - 1))
        .execute(&pool)
        .await?;
        for (symbol, days) in [("LONG", sizes.calendar_days), ("BTC", sizes.chart_days)] {
            sqlx::query(
                r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
                   SELECT $1, d, o, GREATEST(o, c) * 1.01, LEAST(o, c) * 0.99, c, 1000000 + n, d
                   FROM (SELECT g::date AS d, n,
                                (30000 + 5000 * sin(n / 30.0))::numeric(20, 2) AS o,
                                (30000 + 5000 * sin((n + 1) / 30.0))::numeric(20, 2) AS c
                         FROM generate_series($2::date, $3::date, interval '1 day') WITH ORDINALITY AS s(g, n)) AS days
                   WHERE extract(day FROM d) <> 15"#,
            )
            .bind(symbol)
            .bind(day(days))
            .bind(day(1))
            .execute(&pool)
            .await?;
        }
        // BTC's hours of the last `hour_days` days through yesterday, Coinbase candles.
        sqlx::query(
            r#"INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source)
               SELECT 'BTC', h, o, GREATEST(o, c) * 1.001, LEAST(o, c) * 0.999, c, 1000000 + n, 'coinbase'
               FROM (SELECT h, n,
                            (30000 + 5000 * sin(n / 300.0))::numeric(20, 2) AS o,
                            (30000 + 5000 * sin((n + 1) / 300.0))::numeric(20, 2) AS c
                     FROM generate_series($1::date::timestamp AT TIME ZONE 'UTC',
                                          ($2::date + 1)::timestamp AT TIME ZONE 'UTC' - interval '1 hour',
                                          interval '1 hour') WITH ORDINALITY AS s(h, n)) AS hours"#,
        )
        .bind(day(sizes.hour_days))
        .bind(day(1))
        .execute(&pool)
        .await?;
        sqlx::query("ANALYZE daily_prices").execute(&pool).await?;
        sqlx::query("ANALYZE hourly_prices").execute(&pool).await?;
        pool.close().await;

        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut api = spawn(
            url,
            &self.fake.base_url(),
            &["api"],
            &[("BIND_ADDR", &format!("127.0.0.1:{port}"))],
        )?;
        self.wait_ready(&base).await?;
        let rows = self.page_measures(&base, sizes, report).await;
        terminate(&mut api).await?;
        rows
    }

    async fn page_measures(
        &self,
        base: &str,
        sizes: &PageSizes,
        report: &mut Report,
    ) -> Result<()> {
        let today = Utc::now().date_naive();
        let day = |n: u64| today.checked_sub_days(Days::new(n)).expect("a date");

        // The calendar's data for twenty years, over loopback, after a warm-up.
        let days_url = format!(
            "{base}/api/v1/days?symbol=LONG&start_date={}&end_date={today}",
            day(sizes.calendar_days - 1)
        );
        let mut times = Vec::with_capacity(sizes.requests);
        let mut letters = 0;
        for i in 0..sizes.requests + 3 {
            let began = Instant::now();
            let bytes = self.http.get(&days_url).send().await?.bytes().await?;
            let body: serde_json::Value = serde_json::from_slice(&bytes)?;
            if i >= 3 {
                times.push(began.elapsed());
            }
            letters = body["statuses"].as_str().map_or(0, str::len);
        }
        anyhow::ensure!(
            letters as u64 == sizes.calendar_days,
            "the calendar has {letters} days"
        );
        times.sort();
        let median = times[times.len() / 2];
        let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
        report.row(
            format!(
                "Page: the calendar's data (GET /api/v1/days), {} days, over loopback",
                sizes.calendar_days
            ),
            format!(
                "median {:.2} ms, p95 {:.2} ms ({} requests, request to parsed body)",
                ms(median),
                ms(p95),
                sizes.requests
            ),
            "< 5 ms",
            Some(median < Duration::from_millis(5)),
        );

        // The browser: transfer size and time to a drawn chart of four years.
        let browser = browser::Browser::start(1280, 1000).await;
        let days_page = format!(
            "{base}/?symbol=BTC&start_date={}&end_date={today}",
            day(sizes.chart_days)
        );
        let hours_page = format!(
            "{base}/?symbol=BTC&start_date={}&end_date={}&timeframe=1h",
            day(sizes.hour_days),
            day(1)
        );
        // The browser is closed whatever the loads answer.
        let loads = async {
            let days = chart_loads(&browser, &days_page, sizes.loads).await?;
            let hours = chart_loads(&browser, &hours_page, sizes.loads).await?;
            anyhow::Ok((days, hours))
        }
        .await;
        browser.close().await;
        let (days, hours) = loads?;
        let figures = &days.last;
        let page_kib = figures["page"].as_f64().unwrap_or(f64::MAX) / 1024.0;
        report.row(
            "Page: total transfer of `/` (the page and its assets, uncompressed)",
            format!(
                "{page_kib:.1} KiB in {} files (on a repeat visit {:.1} KiB: 304s to the ETags); the default view's data {:.1} KiB more",
                figures["files"],
                figures["wire"].as_f64().unwrap_or(0.0) / 1024.0,
                figures["data"].as_f64().unwrap_or(0.0) / 1024.0
            ),
            "< 300 KB",
            Some(page_kib * 1024.0 < 300_000.0),
        );
        for (loads, what, target) in [
            (
                &days,
                format!("{} days of one coin (1d)", sizes.chart_days),
                300.0,
            ),
            (
                &hours,
                format!("{} days of one coin's hours (1h)", sizes.hour_days),
                500.0,
            ),
        ] {
            report.row(
                format!(
                    "Page: navigation start to drawn chart, {what}, loopback, headless Chromium"
                ),
                format!(
                    "median {:.0} ms of {} loads, the first (nothing cached) {:.0} ms ({} candles, {:.0} KiB of prices)",
                    loads.median,
                    sizes.loads,
                    loads.first,
                    loads.last["candles"],
                    loads.last["prices"].as_f64().unwrap_or(0.0) / 1024.0
                ),
                format!("< {target:.0} ms"),
                Some(loads.median < target),
            );
        }
        report.notes.push(format!(
            "Where the page's time goes, in ms from navigation start (the median load): four years of days: {}; \
             a year of hours: {}.",
            days.steps(),
            hours.steps()
        ));
        report.notes.push(
            "The page rows: `/api/v1/days` is timed from request to parsed body over loopback, so it bounds the \
             server time from above. The chart time is `performance.now()` (from navigation start) two animation \
             frames after Lightweight Charts was given the candles, read in a real headless Chromium (software \
             rendering, `--disable-gpu`); it includes loading the page, its 194 KiB chart library and the prices \
             (the calendar, the coin list and the jobs are drawn after the chart)."
                .to_owned(),
        );
        Ok(())
    }
}

/// The times to a drawn chart of `loads` navigations to `page`.
struct ChartLoads {
    median: f64,
    /// The first load, with nothing cached.
    first: f64,
    /// The figures of the median load: candles, bytes of the page, of its data, of the
    /// prices, and its steps (when each thing happened, in ms from navigation start).
    last: serde_json::Value,
}

impl ChartLoads {
    /// The median load's steps in order, as `name at N ms`.
    fn steps(&self) -> String {
        let mut steps: Vec<(f64, String)> = self.last["steps"]
            .as_object()
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|(name, at)| Some((at.as_f64()?, name.replace('_', " "))))
                    .collect()
            })
            .unwrap_or_default();
        steps.sort_by(|a, b| a.0.total_cmp(&b.0));
        steps
            .iter()
            .map(|(at, name)| format!("{name} {at:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Navigates to `page` `loads` times (from a blank page each time) and reads, once the
/// chart says it is drawn, when that was and what was downloaded.
async fn chart_loads(browser: &browser::Browser, page: &str, loads: usize) -> Result<ChartLoads> {
    let mut runs = Vec::with_capacity(loads);
    for _ in 0..loads {
        browser
            .client
            .goto("about:blank")
            .await
            .context("a blank page")?;
        browser.client.goto(page).await.context("the page loads")?;
        browser
            .wait_for("body[data-chart-candles]", "the chart")
            .await;
        let figures = browser
            .run(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const resources = performance.getEntriesByType('resource');
                 const body = entry => entry.encodedBodySize || 0;
                 const wire = entry => entry.transferSize || 0;
                 const path = entry => new URL(entry.name).pathname;
                 const assets = resources.filter(entry => path(entry).startsWith('/assets/'));
                 const data = resources.filter(entry => path(entry).startsWith('/api/')
                   && !entry.name.includes('job-events'));
                 const prices = data.filter(entry => path(entry) === '/api/v1/prices');
                 return {drawn: window.chartDrawnAt, candles: Number(document.body.dataset.chartCandles),
                         page: body(nav) + assets.reduce((sum, entry) => sum + body(entry), 0),
                         wire: wire(nav) + assets.reduce((sum, entry) => sum + wire(entry), 0),
                         files: 1 + assets.length,
                         data: data.reduce((sum, entry) => sum + body(entry), 0),
                         prices: prices.reduce((sum, entry) => sum + body(entry), 0),
                         errors: window.pageErrors.length,
                         // Where the time went: the library and the prices arrived, the page
                         // started, the prices were parsed, handed to the chart, drawn.
                         steps: Object.assign({
                             library: resources.filter(e => path(e).includes('lightweight')).map(e => e.responseEnd)[0],
                             dom_ready: nav.domContentLoadedEventStart,
                             prices_asked: prices.map(e => e.requestStart)[0],
                             prices_arrived: prices.map(e => e.responseEnd)[0]},
                           Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime])))};",
                vec![],
            )
            .await;
        anyhow::ensure!(
            figures["errors"] == 0,
            "the page reported errors: {figures}"
        );
        figures["drawn"].as_f64().context("a drawing time")?;
        runs.push(figures);
    }
    let drawn = |run: &serde_json::Value| run["drawn"].as_f64().unwrap_or(f64::MAX);
    let first = drawn(&runs[0]);
    runs.sort_by(|a, b| drawn(a).total_cmp(&drawn(b)));
    let last = runs.swap_remove(runs.len() / 2);
    Ok(ChartLoads {
        median: drawn(&last),
        first,
        last,
    })
}
