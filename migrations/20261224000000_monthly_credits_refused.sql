-- CoinGecko's own word that a key's credits of a month are spent (a refusal naming its
-- monthly credits): from then on no process calls with that key until the month turns,
-- whatever the count says (with no COINGECKO_CALLS_PER_MONTH, or a count that another
-- user of the key has outrun). Null: no such refusal.
ALTER TABLE monthly_credits ADD COLUMN IF NOT EXISTS refused_at TIMESTAMPTZ;
