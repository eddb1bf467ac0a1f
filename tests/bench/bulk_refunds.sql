-- bulk_refunds.sql: N refunded payments and their refund_log rows with a valid
-- hash chain, written set-based for the refund export benchmark
-- (deploy/local/bench.sh export). Run as a superuser on an empty, migrated
-- store:  psql -v n=1000000 -f tests/bench/bulk_refunds.sql
--
-- The rows are written whole, so the triggers (which would chain them one at
-- a time) are off for this session; the chain is computed here the way the
-- refund_log trigger computes it (coupond_refund_hash), by one recursive
-- query, and the chain head is set to its end. Refund i: order i * 100 +
-- i % 100 of user i, EUR and JPY alternately, reasons with commas and quotes
-- now and then, created 1 ms apart.
\set ON_ERROR_STOP on
SET session_replication_role = replica;
SET statement_timeout = 0;

INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, amount_cents, currency,
                      paid_at, state, attempts)
SELECT i * 100 + i % 100, 'bulk-' || i, i, 1, 1, 1500 + i % 1000,
       CASE WHEN i % 2 = 0 THEN 'EUR' ELSE 'JPY' END,
       timestamptz '2026-11-01 00:00:00+00' + i * interval '1 millisecond', 'refunded', 1
  FROM generate_series(1, :n) AS i;

CREATE TEMP TABLE bulk_chain AS
WITH RECURSIVE chain (seq, prev_hash, hash) AS (
    SELECT 0::bigint, NULL::text, repeat('0', 64)
    UNION ALL
    SELECT c.seq + 1, c.hash,
           coupond_refund_hash(c.seq + 1, (c.seq + 1) * 100 + (c.seq + 1) % 100,
                               'bulk-' || (c.seq + 1), 1500 + (c.seq + 1) % 1000,
                               CASE WHEN (c.seq + 1) % 2 = 0 THEN 'EUR' ELSE 'JPY' END,
                               CASE WHEN (c.seq + 1) % 10 = 0
                                    THEN 'rejected: amount, "really" ' || (c.seq + 1)
                                    ELSE 'deadline: no coupons 1800 s after payment' END,
                               timestamptz '2026-11-01 00:30:00+00'
                                   + (c.seq + 1) * interval '1 millisecond',
                               c.hash)
      FROM chain c
     WHERE c.seq < :n
)
SELECT seq, prev_hash, hash FROM chain WHERE seq > 0;

INSERT INTO refund_log (seq, order_id, payment_id, amount_cents, currency, reason, created_at,
                        prev_hash, hash)
SELECT seq, seq * 100 + seq % 100, 'bulk-' || seq, 1500 + seq % 1000,
       CASE WHEN seq % 2 = 0 THEN 'EUR' ELSE 'JPY' END,
       CASE WHEN seq % 10 = 0 THEN 'rejected: amount, "really" ' || seq
            ELSE 'deadline: no coupons 1800 s after payment' END,
       timestamptz '2026-11-01 00:30:00+00' + seq * interval '1 millisecond', prev_hash, hash
  FROM bulk_chain ORDER BY seq;

UPDATE refund_chain_head SET seq = c.seq, hash = c.hash
  FROM (SELECT seq, hash FROM bulk_chain ORDER BY seq DESC LIMIT 1) c
 WHERE id = 1;
RESET session_replication_role;
ANALYZE payments;
ANALYZE refund_log;
