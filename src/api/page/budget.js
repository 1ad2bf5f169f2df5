// The budget panel: the month's CoinGecko credits as a bar, the days until they reset,
// what the tracked coins cost a month, and each source's calls per minute. Read from
// GET /api/v1/budget when the page opens and every 30 seconds. Kept apart from app.js:
// it shares nothing with the rest of the page but the section it fills.
(function () {
  "use strict";
  const REFRESH_MS = 30000;
  const number = (n) => Number(n).toLocaleString("en-US");

  function text(id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = value;
  }

  function render(budget) {
    const section = document.getElementById("budget-section");
    const cg = budget.coingecko;
    const bar = document.getElementById("credits-bar");
    const resets = cg.month_resets_at.slice(0, 10);
    const days = cg.days_to_reset === 1 ? "1 day" : number(cg.days_to_reset) + " days";
    if (cg.calls_per_month) {
      bar.max = cg.calls_per_month;
      bar.value = Math.min(cg.used_this_month, cg.calls_per_month);
      bar.hidden = false;
      bar.textContent = number(cg.used_this_month) + " of " + number(cg.calls_per_month);
      text("credits-used", number(cg.used_this_month) + " of " + number(cg.calls_per_month) +
        " CoinGecko calls used this month, " + number(cg.left_this_month) + " left");
      section.classList.toggle("spent", cg.left_this_month === 0);
    } else {
      bar.hidden = true;
      text("credits-used", number(cg.used_this_month) +
        " CoinGecko calls this month (no monthly limit set: COINGECKO_CALLS_PER_MONTH)");
    }
    text("credits-reset", "Resets in " + days + ", on " + resets + " (UTC).");
    const coins = cg.tracked_coins === 1 ? "1 tracked coin costs" :
      number(cg.tracked_coins) + " tracked coins cost";
    text("credits-estimate", "The " + coins + " about " +
      number(cg.tracked_monthly_estimate) + " calls a month under SYNC_SCHEDULE.");
    const warning = document.getElementById("credits-warning");
    warning.textContent = cg.warning || "";
    warning.hidden = !cg.warning;
    let minute = "Per minute: CoinGecko " + number(cg.calls_per_minute) + " (" +
      number(cg.calls_last_minute) + " in the last minute, every process)";
    if (budget.coinbase) {
      minute += ", Coinbase Exchange " + number(budget.coinbase.calls_per_minute) + " (" +
        number(budget.coinbase.calls_last_minute) + "), no monthly credits";
    }
    text("minute-budgets", minute + ".");
    section.dataset.used = String(cg.used_this_month);
    section.dataset.daysToReset = String(cg.days_to_reset);
  }

  async function refresh() {
    try {
      const response = await fetch("/api/v1/budget", {headers: {Accept: "application/json"}});
      if (!response.ok) throw new Error("GET /api/v1/budget answered " + response.status);
      render(await response.json());
    } catch (error) {
      text("credits-used", "The budget could not be read: " + error.message);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();
