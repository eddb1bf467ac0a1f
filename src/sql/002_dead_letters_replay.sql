-- 002_dead_letters_replay.sql: what operators need to work the dead letters
-- (couponctl dlq): how a letter was closed, and an append-only audit trail of
-- every replay and resolve, with who did it, when and what happened.

-- How a letter was closed. resolved_at (001) says when; these say by whom and
-- how. They are cleared when the letter comes back (see dead_letters_sighting).
ALTER TABLE dead_letters
    ADD COLUMN resolved_by     text,  -- the operator's OS user
    ADD COLUMN resolution      text,  -- the result that closed it: issued, refunded,
                                      -- duplicate, handed_to_w, or resolved (by hand)
    ADD COLUMN resolution_note text,  -- the operator's note (resolve), or the outcome's detail
    ADD COLUMN last_replay_at  timestamptz;

CREATE INDEX dead_letters_reason ON dead_letters (reason, id);

-- Every lane that dead-lettered the letter (the same notification travels
-- both lanes), so that operators can select by lane; `lane` stays the first.
ALTER TABLE dead_letters ADD COLUMN lanes text[] NOT NULL DEFAULT '{}';
UPDATE dead_letters SET lanes = ARRAY[lane];

-- Keeps lanes, and the first lane, whatever a sighting writes
-- (coupond_dead_letter writes the newest sighting's lane); and a letter seen
-- again after it was closed is open again (coupond_dead_letter sets
-- resolved_at to NULL): its old resolution no longer holds.
CREATE FUNCTION coupond_dead_letters_sighting() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.lanes := ARRAY[NEW.lane];
        RETURN NEW;
    END IF;
    IF NOT NEW.lane = ANY (OLD.lanes) THEN
        NEW.lanes := OLD.lanes || NEW.lane;
    END IF;
    NEW.lane := OLD.lane;
    IF OLD.resolved_at IS NOT NULL AND NEW.resolved_at IS NULL THEN
        NEW.resolved_by := NULL;
        NEW.resolution := NULL;
        NEW.resolution_note := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER dead_letters_sighting BEFORE INSERT OR UPDATE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION coupond_dead_letters_sighting();

------------------------------------------------------------------------------
-- The audit trail: one row per replay or resolve of one letter. Append-only,
-- like the refund log. A dry run records nothing.
CREATE TABLE dlq_actions (
    id        bigserial PRIMARY KEY,
    letter_id bigint NOT NULL REFERENCES dead_letters (id),
    action    text NOT NULL CHECK (action IN ('replay', 'resolve')),
    os_user   text NOT NULL,                        -- who, as the operating system knows them
    host      text NOT NULL DEFAULT '',             -- where couponctl ran
    db_user   text NOT NULL DEFAULT current_user,   -- the store role used
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    result    text NOT NULL CHECK (result IN ('issued', 'refunded', 'duplicate', 'handed_to_w',
                                              'invalid', 'refused', 'failed', 'resolved')),
    detail    text,                                 -- what happened, or the operator's note
    resigned  boolean NOT NULL DEFAULT false,       -- replayed under a new signature (--resign)
    order_id  bigint                                -- the order, when the body names one
);
CREATE INDEX dlq_actions_letter ON dlq_actions (letter_id, id);
CREATE INDEX dlq_actions_at ON dlq_actions (at);

CREATE TRIGGER dlq_actions_append_only BEFORE UPDATE OR DELETE ON dlq_actions
    FOR EACH ROW EXECUTE FUNCTION coupond_append_only();
CREATE TRIGGER dlq_actions_no_truncate BEFORE TRUNCATE ON dlq_actions
    FOR EACH STATEMENT EXECUTE FUNCTION coupond_append_only();

------------------------------------------------------------------------------
-- Records one action on one letter, in one transaction with its effect on the
-- letter:
--   p_replayed      the letter went through a replay: replay_count + 1
--   p_reason        when not NULL, the letter's new reason and detail (a
--                   replay that found it still invalid, for a new reason)
--   p_close         the action closed the letter: resolved_at, resolved_by,
--                   resolution = p_result, resolution_note = p_detail
-- Returns the action's id, or NULL when no such letter exists.
CREATE FUNCTION coupond_dlq_record(p_letter_id bigint, p_action text, p_os_user text,
                                   p_host text, p_result text, p_detail text,
                                   p_resigned boolean, p_order_id bigint, p_replayed boolean,
                                   p_reason text, p_letter_detail text, p_close boolean)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    action_id bigint;
BEGIN
    UPDATE dead_letters
       SET replay_count = replay_count + CASE WHEN p_replayed THEN 1 ELSE 0 END,
           last_replay_at = CASE WHEN p_replayed THEN now() ELSE last_replay_at END,
           reason = coalesce(p_reason, reason),
           detail = CASE WHEN p_reason IS NULL THEN detail ELSE p_letter_detail END,
           resolved_at = CASE WHEN p_close THEN now() ELSE resolved_at END,
           resolved_by = CASE WHEN p_close THEN p_os_user ELSE resolved_by END,
           resolution = CASE WHEN p_close THEN p_result ELSE resolution END,
           resolution_note = CASE WHEN p_close THEN p_detail ELSE resolution_note END
     WHERE id = p_letter_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO dlq_actions (letter_id, action, os_user, host, result, detail, resigned,
                             order_id)
    VALUES (p_letter_id, p_action, p_os_user, coalesce(p_host, ''), p_result, p_detail,
            coalesce(p_resigned, false), p_order_id)
    RETURNING id INTO action_id;
    RETURN action_id;
END
$$;

------------------------------------------------------------------------------
-- What coupond_issue would answer for this notification now, without
-- recording anything (couponctl dlq replay --dry-run). Same row shape and
-- outcomes as coupond_issue: issued, duplicate, transient, rejected,
-- conflict; the error texts match its own, except that a conflict names the
-- stored payment only.
CREATE FUNCTION coupond_issue_preview(p_order_id bigint, p_payment_id text, p_user_id bigint,
                                      p_deal_id bigint, p_quantity integer,
                                      p_amount_cents bigint, p_currency text,
                                      p_paid_at timestamptz)
RETURNS TABLE (outcome text, state text, error text)
LANGUAGE sql STABLE AS $$
    WITH v AS (
        SELECT p.state AS stored_state,
               p.order_id IS NOT NULL
                   AND (p.payment_id, p.user_id, p.deal_id, p.quantity, p.amount_cents,
                        p.currency, p.paid_at)
                       IS DISTINCT FROM (p_payment_id, p_user_id, p_deal_id, p_quantity,
                                         p_amount_cents, p_currency, p_paid_at) AS differs,
               p.payment_id AS stored_payment,
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
               WHEN differs THEN 'conflict'
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
               WHEN differs THEN
                   format('rejected: conflict: order %s is stored as payment %s, with other '
                          'fields than the notification', p_order_id, stored_payment)
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
