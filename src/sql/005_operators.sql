-- 005_operators.sql: what operators reach for at the command line.
--
-- 1. A conflict names the fields that differ first, each with its stored and
--    its received value, so that the reason survives any cut of the text.
-- 2. couponctl order refund: an operator refunds a pending order through the
--    same one-transaction refund the W lane makes (coupond_refund), with
--    reason 'operator', and who did it, from where and why is recorded
--    beside it (operator_refunds), in the same transaction.
-- 3. couponctl dlq purge: resolved letters older than a retention are
--    deleted; open letters never are. Each purge is recorded in the audit
--    trail (dlq_actions, action 'purge'), which outlives the letters it
--    names: dlq_actions.letter_id no longer references dead_letters.

------------------------------------------------------------------------------
-- 1. The fields of a stored payment that differ from a notification, in the
-- order of the notification table: their names, then each with its stored and
-- received value, "quantity, amount_cents: quantity (stored 2, received 3),
-- amount_cents (stored 3000, received 4500)"; the names come first so that
-- even a cut text (the lanes keep 255 bytes) says which fields differ. NULL
-- when none differs.
CREATE FUNCTION coupond_payment_diff(s_payment_id text, s_user_id bigint, s_deal_id bigint,
                                     s_quantity integer, s_amount_cents bigint,
                                     s_currency text, s_paid_at timestamptz,
                                     r_payment_id text, r_user_id bigint, r_deal_id bigint,
                                     r_quantity integer, r_amount_cents bigint,
                                     r_currency text, r_paid_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(f.name, ', ' ORDER BY f.n) || ': ' ||
           string_agg(format('%s (stored %s, received %s)', f.name, f.stored, f.received), ', '
                      ORDER BY f.n)
      FROM (VALUES (1, 'payment_id', s_payment_id, r_payment_id),
                   (2, 'user_id', s_user_id::text, r_user_id::text),
                   (3, 'deal_id', s_deal_id::text, r_deal_id::text),
                   (4, 'quantity', s_quantity::text, r_quantity::text),
                   (5, 'amount_cents', s_amount_cents::text, r_amount_cents::text),
                   (6, 'currency', s_currency, r_currency),
                   (7, 'paid_at',
                    to_char(s_paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                    to_char(r_paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
           AS f (n, name, stored, received)
     WHERE f.stored IS DISTINCT FROM f.received
$$;

-- As in 001, but the conflict of an order stored with another payment reads
-- 'rejected: conflict: order 4201 differs from its stored payment in
-- quantity, amount_cents: quantity (stored 2, received 3), ...'.
CREATE OR REPLACE FUNCTION coupond_record_payment(p_order_id bigint, p_payment_id text,
                                                  p_user_id bigint, p_deal_id bigint,
                                                  p_quantity integer, p_amount_cents bigint,
                                                  p_currency text, p_paid_at timestamptz)
RETURNS TABLE (conflict text, state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p payments%ROWTYPE;
    other_order bigint;
    diff text;
BEGIN
    INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, amount_cents,
                          currency, paid_at)
    VALUES (p_order_id, p_payment_id, p_user_id, p_deal_id, p_quantity, p_amount_cents,
            p_currency, p_paid_at)
    ON CONFLICT DO NOTHING;

    SELECT * INTO p FROM payments WHERE order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        SELECT order_id INTO other_order FROM payments WHERE payment_id = p_payment_id;
        conflict := format('rejected: conflict: payment_id %s belongs to order %s, not %s',
                           p_payment_id, other_order, p_order_id);
        RETURN NEXT;
        RETURN;
    END IF;
    state := p.state;
    diff := coupond_payment_diff(p.payment_id, p.user_id, p.deal_id, p.quantity,
                                 p.amount_cents, p.currency, p.paid_at, p_payment_id,
                                 p_user_id, p_deal_id, p_quantity, p_amount_cents, p_currency,
                                 p_paid_at);
    IF diff IS NOT NULL THEN
        conflict := format('rejected: conflict: order %s differs from its stored payment in %s',
                           p.order_id, diff);
    END IF;
    RETURN NEXT;
END
$$;

-- As in 002, with the conflict text of coupond_record_payment.
CREATE OR REPLACE FUNCTION coupond_issue_preview(p_order_id bigint, p_payment_id text,
                                                 p_user_id bigint, p_deal_id bigint,
                                                 p_quantity integer, p_amount_cents bigint,
                                                 p_currency text, p_paid_at timestamptz)
RETURNS TABLE (outcome text, state text, error text)
LANGUAGE sql STABLE AS $$
    WITH v AS (
        SELECT p.state AS stored_state,
               CASE WHEN p.order_id IS NOT NULL THEN
                   coupond_payment_diff(p.payment_id, p.user_id, p.deal_id, p.quantity,
                                        p.amount_cents, p.currency, p.paid_at, p_payment_id,
                                        p_user_id, p_deal_id, p_quantity, p_amount_cents,
                                        p_currency, p_paid_at)
               END AS diff,
               o.order_id AS other_order,
               d.deal_id AS known_deal, d.active, d.currency AS deal_currency, d.price_cents,
               d.price_cents::numeric * p_quantity AS due
          FROM (VALUES (1)) AS one (x)
          LEFT JOIN payments p ON p.order_id = p_order_id
          LEFT JOIN payments o ON o.payment_id = p_payment_id AND o.order_id <> p_order_id
          LEFT JOIN deals d ON d.deal_id = p_deal_id
    )
    SELECT CASE
               WHEN stored_state IS NULL AND other_order IS NOT NULL THEN 'conflict'
               WHEN diff IS NOT NULL THEN 'conflict'
               WHEN stored_state IS DISTINCT FROM 'pending' AND stored_state IS NOT NULL
                   THEN 'duplicate'
               WHEN known_deal IS NULL OR NOT active THEN 'transient'
               WHEN deal_currency <> p_currency OR due <> p_amount_cents THEN 'rejected'
               ELSE 'issued'
           END,
           coalesce(stored_state, CASE WHEN other_order IS NULL THEN 'pending' END),
           CASE
               WHEN stored_state IS NULL AND other_order IS NOT NULL THEN
                   format('rejected: conflict: payment_id %s belongs to order %s, not %s',
                          p_payment_id, other_order, p_order_id)
               WHEN diff IS NOT NULL THEN
                   format('rejected: conflict: order %s differs from its stored payment in %s',
                          p_order_id, diff)
               WHEN stored_state IS DISTINCT FROM 'pending' AND stored_state IS NOT NULL
                   THEN NULL
               WHEN known_deal IS NULL THEN format('deal %s is unknown', p_deal_id)
               WHEN NOT active THEN format('deal %s is inactive', p_deal_id)
               WHEN deal_currency <> p_currency THEN
                   format('rejected: currency %s does not match deal %s currency %s',
                          p_currency, p_deal_id, deal_currency)
               WHEN due <> p_amount_cents THEN
                   format('rejected: amount_cents %s != price %s x quantity %s = %s (deal %s)',
                          p_amount_cents, price_cents, p_quantity, due, p_deal_id)
           END
      FROM v
$$;

------------------------------------------------------------------------------
-- 2. Operators' refunds: who refunded which order, from where, and why.
-- Append-only, like the refund log it annotates (one row per operator refund;
-- the refund itself is the refund_log row of refund_seq, reason 'operator').
CREATE TABLE operator_refunds (
    order_id   bigint PRIMARY KEY,
    refund_seq bigint NOT NULL UNIQUE REFERENCES refund_log (seq),
    os_user    text NOT NULL,                      -- who, as the operating system knows them
    host       text NOT NULL DEFAULT '',           -- where couponctl ran
    db_user    text NOT NULL DEFAULT current_user, -- the store role used
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    note       text NOT NULL CHECK (note <> '')    -- why (the customer asked, ...)
);
CREATE TRIGGER operator_refunds_append_only BEFORE UPDATE OR DELETE ON operator_refunds
    FOR EACH ROW EXECUTE FUNCTION coupond_append_only();
CREATE TRIGGER operator_refunds_no_truncate BEFORE TRUNCATE ON operator_refunds
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_append_only();

-- Refunds a pending order now, for an operator: coupond_refund(order,
-- 'operator') and the operator_refunds row, in one transaction. The payments
-- row lock coupond_refund takes serialises it with the lanes' issue attempts
-- and refunds of the order: whichever comes first wins, the other finds the
-- order done. Returns coupond_refund's row: outcome 'refunded' (refund_seq
-- the new refund), 'duplicate' (already issued or refunded: nothing changed;
-- state says which) or 'not_found'.
CREATE FUNCTION coupond_operator_refund(p_order_id bigint, p_os_user text, p_host text,
                                        p_note text)
RETURNS TABLE (outcome text, state text, error text, refund_seq bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    f record;
BEGIN
    IF coalesce(p_note, '') = '' OR coalesce(p_os_user, '') = '' THEN
        RAISE EXCEPTION 'coupond_operator_refund: order %: a user and a note are needed',
            p_order_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO f FROM coupond_refund(p_order_id, 'operator');
    IF f.outcome = 'refunded' THEN
        INSERT INTO operator_refunds (order_id, refund_seq, os_user, host, note)
            VALUES (p_order_id, f.refund_seq, p_os_user, coalesce(p_host, ''), p_note);
    END IF;
    outcome := f.outcome;
    state := f.state;
    error := f.error;
    refund_seq := f.refund_seq;
    RETURN NEXT;
END
$$;

------------------------------------------------------------------------------
-- 3. Retention of resolved dead letters. The audit trail keeps its rows when
-- their letter goes: the reference becomes a plain id.
ALTER TABLE dlq_actions DROP CONSTRAINT IF EXISTS dlq_actions_letter_id_fkey;
ALTER TABLE dlq_actions DROP CONSTRAINT IF EXISTS dlq_actions_action_check,
    ADD CONSTRAINT dlq_actions_action_check CHECK (action IN ('replay', 'resolve', 'purge'));
ALTER TABLE dlq_actions DROP CONSTRAINT IF EXISTS dlq_actions_result_check,
    ADD CONSTRAINT dlq_actions_result_check
        CHECK (result IN ('issued', 'refunded', 'duplicate', 'handed_to_w', 'invalid', 'refused',
                          'failed', 'resolved', 'purged'));

-- Deletes the letters resolved before now() - p_older_than (never an open
-- one: resolved_at IS NOT NULL is part of the condition, and the letter is
-- locked and checked again), recording one 'purge' row per letter in
-- dlq_actions with what the letter was. p_dry_run: deletes and records
-- nothing, returns what would go. Returns the letters, lowest id first.
CREATE FUNCTION coupond_dlq_purge(p_older_than interval, p_os_user text, p_host text,
                                  p_dry_run boolean)
RETURNS TABLE (id bigint, reason text, resolved_at timestamptz, resolution text,
               resolved_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cutoff timestamptz := now() - p_older_than;
BEGIN
    IF p_older_than IS NULL OR p_older_than < interval '0' OR coalesce(p_os_user, '') = '' THEN
        RAISE EXCEPTION 'coupond_dlq_purge: a retention >= 0 and a user are needed'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_dry_run THEN
        RETURN QUERY
            SELECT d.id, d.reason, d.resolved_at, coalesce(d.resolution, ''),
                   coalesce(d.resolved_by, '')
              FROM dead_letters d
             WHERE d.resolved_at IS NOT NULL AND d.resolved_at < cutoff
             ORDER BY d.id;
        RETURN;
    END IF;
    RETURN QUERY
        WITH gone AS (
            DELETE FROM dead_letters d
             WHERE d.resolved_at IS NOT NULL AND d.resolved_at < cutoff
            RETURNING d.id, d.reason, d.resolved_at, d.resolution, d.resolved_by, d.fingerprint,
                      d.seen_count, d.replay_count
        ), audit AS (
            INSERT INTO dlq_actions (letter_id, action, os_user, host, result, detail)
            SELECT g.id, 'purge', p_os_user, coalesce(p_host, ''), 'purged',
                   format('purged after %s: reason %s, resolved %s by %s (%s), seen %s, '
                          'replayed %s, fingerprint %s', p_older_than, g.reason,
                          to_char(g.resolved_at AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                          coalesce(g.resolved_by, '?'), coalesce(g.resolution, '?'),
                          g.seen_count, g.replay_count, g.fingerprint)
              FROM gone g
        )
        SELECT g.id, g.reason, g.resolved_at, coalesce(g.resolution, ''),
               coalesce(g.resolved_by, '')
          FROM gone g ORDER BY g.id;
END
$$;

------------------------------------------------------------------------------
-- Grants (003's roles). New functions are nobody's but their roles'.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', current_schema());
END
$$;
REVOKE ALL ON operator_refunds FROM PUBLIC;
-- The daemon's issue and refund functions build their conflict texts with it.
GRANT EXECUTE ON FUNCTION
    coupond_payment_diff(text, bigint, bigint, integer, bigint, text, timestamptz, text, bigint,
                         bigint, integer, bigint, text, timestamptz)
TO coupond_daemon;
GRANT SELECT ON operator_refunds TO coupond_finance;
-- Operators refund orders (with the daemon's grants on payments, refund_log
-- and refund_outbox) and purge resolved letters.
GRANT SELECT, INSERT ON operator_refunds TO coupond_operator;
GRANT DELETE ON dead_letters TO coupond_operator;
GRANT EXECUTE ON FUNCTION
    coupond_operator_refund(bigint, text, text, text),
    coupond_dlq_purge(interval, text, text, boolean)
TO coupond_operator;
