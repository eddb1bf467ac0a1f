-- 001_init.sql: coupond's store: tables, the invariants the database enforces
-- itself (DESIGN: Invariants 1 and 5), and the issue and refund functions.
--
-- store_migrate applies this file once, inside a transaction that holds the
-- migration advisory lock, and records it in schema_migrations. The
-- statements are therefore plain CREATEs: a half-applied file rolls back, and
-- objects that exist without a migration record make the run fail loudly
-- instead of being silently adopted.
--
-- Errors raised by the invariant triggers use SQLSTATE 23000
-- (integrity_constraint_violation) and a message that starts with the table.

-- Deals: what a payment must match before its coupons are issued.
CREATE TABLE deals (
    deal_id     bigint PRIMARY KEY CHECK (deal_id > 0),
    price_cents bigint NOT NULL CHECK (price_cents > 0),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Payments: one row per paid order, created by the first issue attempt.
-- deal_id is not a foreign key: an unknown deal is a transient outcome.
CREATE TABLE payments (
    order_id     bigint PRIMARY KEY CHECK (order_id > 0),
    payment_id   text NOT NULL UNIQUE CHECK (payment_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    user_id      bigint NOT NULL CHECK (user_id > 0),
    deal_id      bigint NOT NULL CHECK (deal_id > 0),
    quantity     integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    paid_at      timestamptz NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'issued', 'refunded')),
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Order ids embed the user's shard (DESIGN: payment notification).
    CONSTRAINT payments_shard CHECK (order_id % 100 = user_id % 100)
);
-- For the sweeper and the on-time check: pending payments by age.
CREATE INDEX payments_pending_paid_at ON payments (paid_at) WHERE state = 'pending';
-- For the sweeper: pending payments nobody has touched for a while.
CREATE INDEX payments_pending_updated_at ON payments (updated_at) WHERE state = 'pending';

-- Coupons: append-only; exactly quantity of them per issued payment.
CREATE TABLE coupons (
    code      text PRIMARY KEY CHECK (code ~ '^[0-9A-HJKMNP-TV-Z]{16}$'),
    order_id  bigint NOT NULL REFERENCES payments (order_id),
    issued_at timestamptz NOT NULL DEFAULT now(),
    issued_by text NOT NULL CHECK (issued_by IN ('l', 'w', 'replay'))
);
CREATE INDEX coupons_order_id ON coupons (order_id);

-- The head of the refund hash chain: one row, locked FOR UPDATE by every
-- refund_log insert, which serialises the chain across transactions.
CREATE TABLE refund_chain_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL CHECK (seq >= 0),
    hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);
INSERT INTO refund_chain_head (id, seq, hash) VALUES (1, 0, repeat('0', 64));

-- The refund log: append-only, hash-chained. seq, created_at, prev_hash and
-- hash are always set by the database (trigger refund_log_chain), whatever
-- the INSERT says.
CREATE TABLE refund_log (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    order_id     bigint NOT NULL UNIQUE REFERENCES payments (order_id),
    payment_id   text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL,
    prev_hash    text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash         text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);

-- Refund requests waiting for the relay to publish them to the payment system.
CREATE TABLE refund_outbox (
    id         bigserial PRIMARY KEY,
    order_id   bigint NOT NULL UNIQUE REFERENCES payments (order_id),
    refund_seq bigint NOT NULL REFERENCES refund_log (seq),
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    sent_at    timestamptz
);
CREATE INDEX refund_outbox_unsent ON refund_outbox (id) WHERE sent_at IS NULL;

-- Dead letters. The same body dead-lettered twice (by both lanes, or again
-- after a replay) is one letter whose seen_count grows: the fingerprint is the
-- SHA-256 of the body, unique.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    lane         text NOT NULL,
    reason       text NOT NULL,
    detail       text,
    headers      jsonb,
    body         bytea NOT NULL DEFAULT ''::bytea,
    fingerprint  text NOT NULL GENERATED ALWAYS AS (encode(sha256(body), 'hex')) STORED,
    seen_count   integer NOT NULL DEFAULT 1 CHECK (seen_count >= 1),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    replay_count integer NOT NULL DEFAULT 0 CHECK (replay_count >= 0),
    resolved_at  timestamptz
);
CREATE UNIQUE INDEX dead_letters_fingerprint ON dead_letters (fingerprint);
CREATE INDEX dead_letters_open ON dead_letters (received_at) WHERE resolved_at IS NULL;

-- Records a dead letter, or counts one more sighting of the same body (the
-- newest reason, detail and headers win). Returns the letter's id and count.
CREATE FUNCTION coupond_dead_letter(p_lane text, p_reason text, p_detail text, p_headers jsonb,
                                    p_body bytea)
RETURNS TABLE (id bigint, seen_count integer)
LANGUAGE sql AS $$
    INSERT INTO dead_letters AS d (lane, reason, detail, headers, body)
    VALUES (p_lane, p_reason, p_detail, p_headers, coalesce(p_body, ''::bytea))
    ON CONFLICT (fingerprint) DO UPDATE
        SET seen_count = d.seen_count + 1, last_seen_at = now(), reason = EXCLUDED.reason,
            detail = EXCLUDED.detail, headers = EXCLUDED.headers, lane = EXCLUDED.lane,
            resolved_at = NULL  -- a letter that comes back is open again
    RETURNING d.id, d.seen_count
$$;

------------------------------------------------------------------------------
-- Invariant 5: the refund log (and the coupons) are append-only.

CREATE FUNCTION coupond_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER refund_log_append_only BEFORE UPDATE OR DELETE ON refund_log
    FOR EACH ROW EXECUTE FUNCTION coupond_append_only();
CREATE TRIGGER refund_log_no_truncate BEFORE TRUNCATE ON refund_log
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_append_only();
CREATE TRIGGER coupons_append_only BEFORE UPDATE OR DELETE ON coupons
    FOR EACH ROW EXECUTE FUNCTION coupond_append_only();
CREATE TRIGGER coupons_no_truncate BEFORE TRUNCATE ON coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_append_only();
CREATE TRIGGER refund_chain_head_no_delete BEFORE DELETE ON refund_chain_head
    FOR EACH ROW EXECUTE FUNCTION coupond_append_only();
CREATE TRIGGER refund_chain_head_no_truncate BEFORE TRUNCATE ON refund_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_append_only();

-- Invariant 3 (nothing lost): payments are never deleted.
CREATE FUNCTION coupond_payments_no_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payments are never deleted: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION coupond_payments_no_delete();
CREATE TRIGGER payments_no_truncate BEFORE TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_payments_no_delete();

-- The chain head moves only from inside the refund_log trigger, one step at a time.
CREATE FUNCTION coupond_chain_head_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 OR NEW.id <> OLD.id OR NEW.seq <> OLD.seq + 1 THEN
        RAISE EXCEPTION 'refund_chain_head is maintained by the refund_log trigger only'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER refund_chain_head_guard BEFORE UPDATE ON refund_chain_head
    FOR EACH ROW EXECUTE FUNCTION coupond_chain_head_guard();

------------------------------------------------------------------------------
-- The refund hash. A row's hash is the lower-case hex SHA-256 of the UTF-8
-- bytes of this canonical text: eight fields joined by one line feed (0x0A),
-- with no trailing line feed:
--
--   seq                      decimal
--   order_id                 decimal
--   payment_id               as stored
--   amount_cents             decimal
--   currency                 three letters
--   N:reason                 N = the reason's length in UTF-8 bytes, decimal,
--                            then ':' and the reason's bytes (it may hold line feeds)
--   created_at               microseconds since 1970-01-01T00:00:00Z, decimal
--   prev_hash                64 lower-case hex digits; 64 '0' for seq 1
--
-- Decimal means base 10, ASCII digits, no sign, no leading zeros. Test
-- vector: seq 1, order_id 4201, payment_id pay-1, 1500 EUR, reason
-- "deadline", created_at 2026-11-21T10:00:00Z, prev_hash 64 '0' gives the text
-- "1\n4201\npay-1\n1500\nEUR\n8:deadline\n1795255200000000\n" + 64 '0' and the hash
-- fe19e7487a21846d99e4403a4b776a584e02e68851f74ea8042de7d332e84110.
-- created_at is set by the trigger to clock_timestamp() (microsecond
-- resolution, so the integer is exact). coupond_refund_verify() recomputes
-- the whole chain in SQL; a verifier in C does the same from exported rows.
CREATE FUNCTION coupond_refund_hash(p_seq bigint, p_order_id bigint, p_payment_id text,
                                    p_amount_cents bigint, p_currency text, p_reason text,
                                    p_created_at timestamptz, p_prev_hash text)
RETURNS text
LANGUAGE sql STABLE STRICT AS $$
    SELECT encode(sha256(convert_to(
        p_seq::text || chr(10) ||
        p_order_id::text || chr(10) ||
        p_payment_id || chr(10) ||
        p_amount_cents::text || chr(10) ||
        p_currency || chr(10) ||
        octet_length(convert_to(p_reason, 'UTF8'))::text || ':' || p_reason || chr(10) ||
        (extract(epoch FROM p_created_at) * 1000000)::bigint::text || chr(10) ||
        p_prev_hash, 'UTF8')), 'hex')
$$;

-- Returns the seq of every row that breaks the chain (a bad hash, a wrong
-- prev_hash or a gap in seq); no rows when the chain verifies.
CREATE FUNCTION coupond_refund_verify() RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
    SELECT seq FROM (
        SELECT r.seq, r.hash, r.prev_hash,
               coupond_refund_hash(r.seq, r.order_id, r.payment_id, r.amount_cents, r.currency,
                                   r.reason, r.created_at, r.prev_hash) AS recomputed,
               lag(r.hash, 1, repeat('0', 64)) OVER w AS expected_prev,
               lag(r.seq, 1, 0::bigint) OVER w AS previous_seq
        FROM refund_log r
        WINDOW w AS (ORDER BY r.seq)
    ) c
    WHERE c.hash <> c.recomputed OR c.prev_hash <> c.expected_prev OR c.seq <> c.previous_seq + 1
    ORDER BY seq
$$;

------------------------------------------------------------------------------
-- Invariant 1: exactly one outcome per order.

-- A payment's identity never changes; state moves only pending -> issued or
-- pending -> refunded, and never leaves those. (Inserts are checked per
-- statement, below: a payment is inserted pending, or issued together with
-- its coupons in the same statement.)
CREATE FUNCTION coupond_payments_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.order_id, NEW.payment_id, NEW.user_id, NEW.deal_id, NEW.quantity, NEW.amount_cents,
        NEW.currency, NEW.paid_at, NEW.created_at)
       IS DISTINCT FROM
       (OLD.order_id, OLD.payment_id, OLD.user_id, OLD.deal_id, OLD.quantity, OLD.amount_cents,
        OLD.currency, OLD.paid_at, OLD.created_at) THEN
        RAISE EXCEPTION 'payments: order %: only state, attempts and last_error may change',
            OLD.order_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.state <> OLD.state
       AND NOT (OLD.state = 'pending' AND NEW.state IN ('issued', 'refunded')) THEN
        RAISE EXCEPTION 'payments: order %: state % -> % refused (only pending -> issued or refunded)',
            OLD.order_id, OLD.state, NEW.state USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER payments_guard BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION coupond_payments_guard();

-- After each INSERT statement on payments: no payment is inserted refunded,
-- and one inserted issued holds exactly quantity coupons (inserted by the same
-- statement: coupond_issue_batch does both in one). One set-based check per
-- statement instead of a trigger call per row: this is the L lane's hot path.
CREATE FUNCTION coupond_payments_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.order_id, n.state, n.quantity, coalesce(c.n, 0) AS n_coupons INTO bad
      FROM new_payments n
      LEFT JOIN LATERAL (SELECT count(*) AS n FROM coupons c WHERE c.order_id = n.order_id) c
        ON n.state = 'issued'
     WHERE n.state NOT IN ('pending', 'issued') OR (n.state = 'issued' AND c.n <> n.quantity)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'payments: order % must be inserted pending, or issued with its % coupons (it is % with %)',
            bad.order_id, bad.quantity, bad.state, bad.n_coupons
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER payments_inserted AFTER INSERT ON payments
    REFERENCING NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_payments_inserted();

-- After each INSERT statement on coupons: every order that got coupons is
-- issued and now holds exactly quantity of them. A refunded order cannot get
-- coupons (it is not issued), and an issued one cannot get a refund row (the
-- refund_log trigger below), so no refund is ever beside coupons.
-- Concurrent statements cannot both add to one order: an order becomes
-- issued under its row lock, and any coupon beyond quantity fails the count.
CREATE FUNCTION coupond_coupons_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT o.order_id, p.state, p.quantity, c.n INTO bad
      FROM (SELECT DISTINCT order_id FROM new_coupons) o
      LEFT JOIN payments p ON p.order_id = o.order_id
      CROSS JOIN LATERAL (SELECT count(*) AS n FROM coupons c WHERE c.order_id = o.order_id) c
     WHERE p.state IS DISTINCT FROM 'issued' OR c.n <> p.quantity
     LIMIT 1;
    IF FOUND AND bad.state IS NULL THEN
        RAISE EXCEPTION 'coupons: order % does not exist', bad.order_id
            USING ERRCODE = 'integrity_constraint_violation';
    ELSIF FOUND AND bad.state <> 'issued' THEN
        RAISE EXCEPTION 'coupons: order % is %: coupons need an issued order', bad.order_id,
            bad.state USING ERRCODE = 'integrity_constraint_violation';
    ELSIF FOUND THEN
        RAISE EXCEPTION 'coupons: order % would hold % of % coupons: an order takes exactly its quantity, in one statement',
            bad.order_id, bad.n, bad.quantity USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER coupons_inserted AFTER INSERT ON coupons
    REFERENCING NEW TABLE AS new_coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_coupons_inserted();

-- A refund row needs a refunded payment without coupons, copies the
-- payment's identity, and extends the hash chain.
CREATE FUNCTION coupond_refund_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    head record;
BEGIN
    SELECT payment_id, amount_cents, currency, state INTO p
        FROM payments WHERE order_id = NEW.order_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'refund_log: order % does not exist', NEW.order_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF p.state <> 'refunded' THEN
        RAISE EXCEPTION 'refund_log: order % is %: a refund needs a refunded order',
            NEW.order_id, p.state USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM coupons WHERE order_id = NEW.order_id) THEN
        RAISE EXCEPTION 'refund_log: order % has coupons', NEW.order_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.payment_id, NEW.amount_cents, NEW.currency)
       IS DISTINCT FROM (p.payment_id, p.amount_cents, p.currency) THEN
        RAISE EXCEPTION 'refund_log: order %: payment_id, amount_cents and currency must match the payment',
            NEW.order_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;

    SELECT seq, hash INTO head FROM refund_chain_head WHERE id = 1 FOR UPDATE;
    NEW.seq := head.seq + 1;
    NEW.prev_hash := head.hash;
    -- Taken after the head lock, so created_at grows with seq.
    NEW.created_at := clock_timestamp();
    NEW.hash := coupond_refund_hash(NEW.seq, NEW.order_id, NEW.payment_id, NEW.amount_cents,
                                    NEW.currency, NEW.reason, NEW.created_at, NEW.prev_hash);
    IF NEW.hash IS NULL THEN
        RAISE EXCEPTION 'refund_log: order %: reason must not be null', NEW.order_id
            USING ERRCODE = 'not_null_violation';
    END IF;
    UPDATE refund_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1;
    RETURN NEW;
END
$$;
CREATE TRIGGER refund_log_chain BEFORE INSERT ON refund_log
    FOR EACH ROW EXECUTE FUNCTION coupond_refund_log_chain();

-- At commit, for a payment whose state an UPDATE changed: an issued payment
-- holds exactly quantity coupons and no refund; a refunded one holds one
-- refund and no coupons. (Payments inserted issued are checked per statement.)
CREATE FUNCTION coupond_outcome_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    n_coupons bigint;
    n_refunds bigint;
BEGIN
    SELECT state, quantity INTO p FROM payments WHERE order_id = NEW.order_id;
    SELECT count(*) INTO n_coupons FROM coupons WHERE order_id = NEW.order_id;
    SELECT count(*) INTO n_refunds FROM refund_log WHERE order_id = NEW.order_id;
    IF (p.state = 'issued' AND (n_coupons <> p.quantity OR n_refunds <> 0))
       OR (p.state = 'refunded' AND (n_refunds <> 1 OR n_coupons <> 0)) THEN
        RAISE EXCEPTION 'payments: order % is % with % of % coupons and % refunds (invariant 1)',
            NEW.order_id, p.state, n_coupons, p.quantity, n_refunds
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER payments_outcome AFTER UPDATE ON payments
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.state <> 'pending') EXECUTE FUNCTION coupond_outcome_check();

------------------------------------------------------------------------------
-- Records a payment notification if its order is new, and checks it against
-- the stored payment. Locks the order's payments row FOR UPDATE (until the
-- caller's transaction ends), which serialises issue attempts and refunds of
-- one order. Returns one row:
--   conflict  NULL when the stored payment is exactly this notification;
--             otherwise why not ('rejected: conflict: ...'): this order is
--             stored with another payment, or this payment_id belongs to
--             another order. Nothing was recorded then.
--   state     the stored payment's state ('pending' when just recorded); NULL
--             when the order is not stored (payment_id conflict)
CREATE FUNCTION coupond_record_payment(p_order_id bigint, p_payment_id text, p_user_id bigint,
                                       p_deal_id bigint, p_quantity integer,
                                       p_amount_cents bigint, p_currency text,
                                       p_paid_at timestamptz)
RETURNS TABLE (conflict text, state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p payments%ROWTYPE;
    other_order bigint;
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
    IF (p.payment_id, p.user_id, p.deal_id, p.quantity, p.amount_cents, p.currency, p.paid_at)
       IS DISTINCT FROM
       (p_payment_id, p_user_id, p_deal_id, p_quantity, p_amount_cents, p_currency, p_paid_at) THEN
        conflict := format('rejected: conflict: order %s is stored as payment %s (user %s, '
                           'deal %s, quantity %s, %s %s, paid_at %s); the notification says '
                           'payment %s (user %s, deal %s, quantity %s, %s %s, paid_at %s)',
                           p.order_id, p.payment_id, p.user_id, p.deal_id, p.quantity,
                           p.amount_cents, p.currency, p.paid_at, p_payment_id, p_user_id,
                           p_deal_id, p_quantity, p_amount_cents, p_currency, p_paid_at);
    END IF;
    RETURN NEXT;
END
$$;

------------------------------------------------------------------------------
-- One issue attempt, atomic, in one round trip (DESIGN: Outcome of one issue
-- attempt). Returns one row:
--   outcome  'issued'     the payment moved to issued and got its coupons
--            'duplicate'  already issued or refunded: nothing changed
--            'transient'  deal unknown or inactive: attempt recorded
--            'rejected'   amount or currency does not match the deal: attempt recorded
--            'conflict'   the notification contradicts a stored payment (this
--                         order with another payment, or this payment_id on
--                         another order): nothing changed
--   state    the payment's state afterwards (NULL when the order is not stored)
--   error    why, for transient, rejected ('rejected: ...') and conflict
--            ('rejected: conflict: ...')
-- p_codes holds exactly p_quantity fresh coupon codes, made by the caller.
CREATE FUNCTION coupond_issue(p_order_id bigint, p_payment_id text, p_user_id bigint,
                              p_deal_id bigint, p_quantity integer, p_amount_cents bigint,
                              p_currency text, p_paid_at timestamptz, p_codes text[],
                              p_issued_by text)
RETURNS TABLE (outcome text, state text, error text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p payments%ROWTYPE;
    d deals%ROWTYPE;
    rec record;
    why text;
BEGIN
    -- Records the payment if new; the row lock it takes serialises this
    -- attempt against other attempts and refunds.
    SELECT r.conflict, r.state INTO rec
        FROM coupond_record_payment(p_order_id, p_payment_id, p_user_id, p_deal_id, p_quantity,
                                    p_amount_cents, p_currency, p_paid_at) AS r;
    IF rec.conflict IS NOT NULL THEN
        outcome := 'conflict';
        state := rec.state;
        error := rec.conflict;
        RETURN NEXT;
        RETURN;
    END IF;
    IF rec.state <> 'pending' THEN
        outcome := 'duplicate';
        state := rec.state;
        RETURN NEXT;
        RETURN;
    END IF;
    -- Already locked; the stored row equals the notification.
    SELECT * INTO p FROM payments WHERE order_id = p_order_id;
    IF cardinality(p_codes) IS DISTINCT FROM p.quantity THEN
        RAISE EXCEPTION 'coupond_issue: order %: % codes for quantity %', p_order_id,
            coalesce(cardinality(p_codes), 0), p.quantity USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT * INTO d FROM deals WHERE deal_id = p.deal_id;
    IF NOT FOUND THEN
        outcome := 'transient';
        why := format('deal %s is unknown', p.deal_id);
    ELSIF NOT d.active THEN
        outcome := 'transient';
        why := format('deal %s is inactive', p.deal_id);
    ELSIF d.currency <> p.currency THEN
        outcome := 'rejected';
        why := format('rejected: currency %s does not match deal %s currency %s', p.currency,
                      p.deal_id, d.currency);
    ELSIF d.price_cents::numeric * p.quantity <> p.amount_cents THEN
        outcome := 'rejected';
        why := format('rejected: amount_cents %s != price %s x quantity %s = %s (deal %s)',
                      p.amount_cents, d.price_cents, p.quantity,
                      d.price_cents::numeric * p.quantity, p.deal_id);
    END IF;
    IF outcome IS NOT NULL THEN
        -- The attempt is recorded and committed: this is an answer, not an error.
        UPDATE payments SET attempts = attempts + 1, last_error = why WHERE order_id = p_order_id;
        state := 'pending';
        error := why;
        RETURN NEXT;
        RETURN;
    END IF;

    UPDATE payments SET state = 'issued', attempts = attempts + 1
        WHERE order_id = p_order_id AND state = 'pending';
    INSERT INTO coupons (code, order_id, issued_by)
        SELECT c, p_order_id, p_issued_by FROM unnest(p_codes) AS c;
    outcome := 'issued';
    state := 'issued';
    RETURN NEXT;
END
$$;

-- Many issue attempts in one statement: the L and W lanes' batches. Input:
-- parallel arrays, one element per notification (p_paid_at_us: microseconds
-- since the epoch), and the coupon codes: p_codes[k] belongs to notification
-- p_code_idx[k] (1-based), exactly its quantity of them. Returns one row per
-- notification: idx (1-based), then what coupond_issue returns.
--
-- The common case is set-based: an order seen for the first time is
-- inserted with the outcome of its first attempt (issued together with its
-- coupons, or pending with attempts = 1 and last_error), all new orders in
-- one INSERT. Every other notification (an order already stored, a repeat of
-- an order within the batch, a payment_id that belongs to another order) then
-- goes through coupond_issue one by one, in order_id order. Any error rolls
-- back the whole statement; the caller then falls back to one transaction per
-- notification, so one bad order cannot fail the others.
CREATE FUNCTION coupond_issue_batch(p_order_ids bigint[], p_payment_ids text[],
                                    p_user_ids bigint[], p_deal_ids bigint[],
                                    p_quantities integer[], p_amounts bigint[],
                                    p_currencies text[], p_paid_at_us bigint[], p_codes text[],
                                    p_code_idx integer[], p_issued_by text)
RETURNS TABLE (idx integer, outcome text, state text, error text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n integer := cardinality(p_order_ids);
    fresh integer[];
    fresh_state text[];
    fresh_why text[];
    r record;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_payment_ids) <> n OR cardinality(p_user_ids) <> n
       OR cardinality(p_deal_ids) <> n OR cardinality(p_quantities) <> n
       OR cardinality(p_amounts) <> n OR cardinality(p_currencies) <> n
       OR cardinality(p_paid_at_us) <> n OR cardinality(p_codes) <> cardinality(p_code_idx)
       OR cardinality(p_codes) <> (SELECT sum(q) FROM unnest(p_quantities) q) THEN
        RAISE EXCEPTION 'coupond_issue_batch: the arrays do not match (% notifications)', n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    WITH input AS (
        SELECT DISTINCT ON (u.o) u.*,
               timestamptz 'epoch' + u.us * interval '1 microsecond' AS paid_at,
               d.deal_id IS NOT NULL AS d_known, d.active AS d_active, d.currency AS d_currency,
               d.price_cents AS d_price
          FROM unnest(p_order_ids, p_payment_ids, p_user_ids, p_deal_ids, p_quantities,
                      p_amounts, p_currencies, p_paid_at_us)
               WITH ORDINALITY AS u(o, pid, uid, did, q, amt, cur, us, i)
          LEFT JOIN deals d ON d.deal_id = u.did
         ORDER BY u.o, u.i
    ), judged AS (
        SELECT input.*,
               CASE WHEN NOT d_known THEN format('deal %s is unknown', did)
                    WHEN NOT d_active THEN format('deal %s is inactive', did)
                    WHEN d_currency <> cur THEN
                        format('rejected: currency %s does not match deal %s currency %s', cur,
                               did, d_currency)
                    WHEN d_price::numeric * q <> amt THEN
                        format('rejected: amount_cents %s != price %s x quantity %s = %s (deal %s)',
                               amt, d_price, q, d_price::numeric * q, did)
               END AS why
          FROM input
    ), ins AS (
        INSERT INTO payments AS p (order_id, payment_id, user_id, deal_id, quantity, amount_cents,
                                   currency, paid_at, state, attempts, last_error)
        SELECT o, pid, uid, did, q, amt, cur, paid_at,
               CASE WHEN why IS NULL THEN 'issued' ELSE 'pending' END, 1, why
          FROM judged ORDER BY o
        ON CONFLICT DO NOTHING
        RETURNING p.order_id, p.state
    ), fresh AS (
        SELECT judged.i, ins.state, judged.why FROM ins JOIN judged ON judged.o = ins.order_id
    ), coupons_in AS (
        INSERT INTO coupons (code, order_id, issued_by)
        SELECT k.code, p_order_ids[k.i], p_issued_by
          FROM unnest(p_codes, p_code_idx) AS k(code, i)
          JOIN fresh ON fresh.i = k.i AND fresh.state = 'issued'
    )
    SELECT array_agg(fresh.i), array_agg(fresh.state), array_agg(fresh.why)
      INTO fresh, fresh_state, fresh_why FROM fresh;

    RETURN QUERY
        SELECT f.i::integer,
               CASE WHEN f.state = 'issued' THEN 'issued'
                    WHEN f.why LIKE 'rejected:%' THEN 'rejected' ELSE 'transient' END,
               f.state, f.why
          FROM unnest(fresh, fresh_state, fresh_why) AS f(i, state, why);

    FOR r IN
        SELECT u.i FROM generate_series(1, n) AS u(i)
         WHERE fresh IS NULL OR NOT u.i = ANY (fresh)
         ORDER BY p_order_ids[u.i], u.i
    LOOP
        RETURN QUERY
            SELECT r.i::integer, c.outcome, c.state, c.error
              FROM coupond_issue(p_order_ids[r.i], p_payment_ids[r.i], p_user_ids[r.i],
                                 p_deal_ids[r.i], p_quantities[r.i], p_amounts[r.i],
                                 p_currencies[r.i],
                                 timestamptz 'epoch' + p_paid_at_us[r.i] * interval '1 microsecond',
                                 ARRAY(SELECT k.code FROM unnest(p_codes, p_code_idx) AS k(code, i)
                                        WHERE k.i = r.i),
                                 p_issued_by) AS c;
    END LOOP;
END
$$;

-- Refunds one order, atomic, in one round trip: pending -> refunded, a
-- refund_log row (the trigger chains it), an outbox row for the relay.
-- Returns one row: outcome 'refunded', 'duplicate' (already issued or
-- refunded; refund_seq is the existing refund's, if any) or 'not_found';
-- the state afterwards; error (not_found only); refund_seq.
CREATE FUNCTION coupond_refund(p_order_id bigint, p_reason text)
RETURNS TABLE (outcome text, state text, error text, refund_seq bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p payments%ROWTYPE;
    r refund_log%ROWTYPE;
BEGIN
    SELECT * INTO p FROM payments WHERE order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        error := format('order %s is unknown', p_order_id);
        RETURN NEXT;
        RETURN;
    END IF;
    IF p.state <> 'pending' THEN
        outcome := 'duplicate';
        state := p.state;
        SELECT seq INTO refund_seq FROM refund_log WHERE order_id = p_order_id;
        RETURN NEXT;
        RETURN;
    END IF;

    UPDATE payments SET state = 'refunded' WHERE order_id = p_order_id;
    INSERT INTO refund_log (order_id, payment_id, amount_cents, currency, reason)
        VALUES (p.order_id, p.payment_id, p.amount_cents, p.currency, coalesce(p_reason, ''))
        RETURNING * INTO r;
    INSERT INTO refund_outbox (order_id, refund_seq, payload)
        VALUES (p.order_id, r.seq, jsonb_build_object(
            'order_id', p.order_id, 'payment_id', p.payment_id, 'user_id', p.user_id,
            'amount_cents', p.amount_cents, 'currency', p.currency, 'reason', r.reason,
            'refund_seq', r.seq, 'refund_hash', r.hash,
            'refunded_at', to_char(r.created_at AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')));
    outcome := 'refunded';
    state := 'refunded';
    refund_seq := r.seq;
    RETURN NEXT;
END
$$;

-- Refunds the order of a payment notification, recording the payment first
-- when the store has never seen it (all its issue attempts may have been
-- lost), atomic, in one round trip. Returns one row like coupond_refund:
-- outcome 'refunded', 'duplicate' (already issued or refunded) or
-- 'conflict' (the notification contradicts a stored payment: nothing
-- changed; error 'rejected: conflict: ...'); the state afterwards (NULL for
-- a conflict on an order that is not stored); error; refund_seq.
CREATE FUNCTION coupond_refund_payment(p_order_id bigint, p_payment_id text, p_user_id bigint,
                                       p_deal_id bigint, p_quantity integer,
                                       p_amount_cents bigint, p_currency text,
                                       p_paid_at timestamptz, p_reason text)
RETURNS TABLE (outcome text, state text, error text, refund_seq bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    rec record;
BEGIN
    SELECT r.conflict, r.state INTO rec
        FROM coupond_record_payment(p_order_id, p_payment_id, p_user_id, p_deal_id, p_quantity,
                                    p_amount_cents, p_currency, p_paid_at) AS r;
    IF rec.conflict IS NOT NULL THEN
        outcome := 'conflict';
        state := rec.state;
        error := rec.conflict;
        RETURN NEXT;
        RETURN;
    END IF;
    -- The row is locked and stored: coupond_refund cannot answer not_found.
    RETURN QUERY SELECT f.outcome, f.state, f.error, f.refund_seq
        FROM coupond_refund(p_order_id, p_reason) AS f;
END
$$;
