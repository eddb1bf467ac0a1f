-- 003_roles.sql: the store's database roles and their grants, so that each
-- program gets only what it needs (docs/finance.md has the table):
--
--   coupond_daemon    the lanes (coupond --role l|w: issue, refund, relay,
--                     sweeper, dead letters) and dlq replay. May only INSERT
--                     into refund_log: never UPDATE, DELETE or TRUNCATE it.
--   coupond_finance   read-only: SELECT on every table (refunds export and
--                     verify, reconcile), no writes.
--   coupond_operator  couponctl's operators' commands: status, deal set, dlq
--                     list/show/replay/resolve/audit, plus what finance reads.
--                     Not db migrate: the schema's owner migrates.
--
-- The three are NOLOGIN group roles: grant them to the login roles that the
-- programs use (GRANT coupond_daemon TO coupond_w_dc1). Roles belong to the
-- whole cluster, so they are created only when missing; several databases of
-- one cluster may migrate at once, hence the duplicate handlers.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['coupond_daemon', 'coupond_finance', 'coupond_operator'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by the migration of another database
            END;
        END IF;
    END LOOP;
END
$$;

------------------------------------------------------------------------------
-- The refund chain's head is written by no role but the schema's owner: the
-- refund_log trigger runs as its owner (SECURITY DEFINER), so that a role that
-- may only insert into refund_log still advances the head. Its search_path is
-- pinned to this schema, so that no caller's objects can stand in for ours.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION coupond_refund_log_chain() SECURITY DEFINER '
                   'SET search_path = pg_catalog, %I, pg_temp', current_schema());
END
$$;

-- Functions are executable by PUBLIC by default: none of this schema's is
-- (they are all coupond's); each role gets EXECUTE on what it calls, below.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', current_schema());
END
$$;
REVOKE ALL ON deals, payments, coupons, refund_chain_head, refund_log, refund_outbox,
    dead_letters, dlq_actions, schema_migrations FROM PUBLIC;

------------------------------------------------------------------------------
-- coupond_daemon. The issue and refund functions run as the caller, so the
-- daemon holds what they do: payments are inserted and updated (state,
-- attempts; SELECT ... FOR UPDATE needs UPDATE), coupons and refund rows
-- only inserted. The per-statement triggers (payments_inserted,
-- coupons_inserted) read their transition tables and coupons as the daemon.
GRANT SELECT ON schema_migrations, deals TO coupond_daemon;
GRANT SELECT, INSERT, UPDATE ON payments TO coupond_daemon;
GRANT SELECT, INSERT ON coupons TO coupond_daemon;
GRANT SELECT, INSERT ON refund_log TO coupond_daemon;
-- The relay: unsent rows, then sent_at.
GRANT SELECT, INSERT, UPDATE ON refund_outbox TO coupond_daemon;
GRANT USAGE ON SEQUENCE refund_outbox_id_seq TO coupond_daemon;
-- Dead letters: a second sighting updates the letter (ON CONFLICT DO UPDATE).
GRANT SELECT, INSERT, UPDATE ON dead_letters TO coupond_daemon;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO coupond_daemon;
-- dlq replay's audit trail: append-only.
GRANT SELECT, INSERT ON dlq_actions TO coupond_daemon;
GRANT USAGE ON SEQUENCE dlq_actions_id_seq TO coupond_daemon;
GRANT EXECUTE ON FUNCTION
    coupond_dead_letter(text, text, text, jsonb, bytea),
    coupond_record_payment(bigint, text, bigint, bigint, integer, bigint, text, timestamptz),
    coupond_issue(bigint, text, bigint, bigint, integer, bigint, text, timestamptz, text[], text),
    coupond_issue_batch(bigint[], text[], bigint[], bigint[], integer[], bigint[], text[],
                        bigint[], text[], integer[], text),
    coupond_refund(bigint, text),
    coupond_refund_payment(bigint, text, bigint, bigint, integer, bigint, text, timestamptz, text),
    coupond_dlq_record(bigint, text, text, text, text, text, boolean, bigint, boolean, text, text,
                       boolean),
    coupond_issue_preview(bigint, text, bigint, bigint, integer, bigint, text, timestamptz)
TO coupond_daemon;

------------------------------------------------------------------------------
-- coupond_finance: reads everything, writes nothing.
GRANT SELECT ON deals, payments, coupons, refund_chain_head, refund_log, refund_outbox,
    dead_letters, dlq_actions, schema_migrations TO coupond_finance;
GRANT EXECUTE ON FUNCTION
    coupond_refund_hash(bigint, bigint, text, bigint, text, text, timestamptz, text),
    coupond_refund_verify()
TO coupond_finance;

------------------------------------------------------------------------------
-- coupond_operator: dlq replay takes the W lane's path (the daemon's grants),
-- status and dlq list/show/audit read (finance's), deal set writes deals.
-- Memberships belong to the cluster, like the roles.
DO $$
BEGIN
    IF NOT pg_has_role('coupond_operator', 'coupond_daemon', 'MEMBER')
       OR NOT pg_has_role('coupond_operator', 'coupond_finance', 'MEMBER') THEN
        GRANT coupond_daemon, coupond_finance TO coupond_operator;
    END IF;
EXCEPTION WHEN unique_violation OR duplicate_object THEN
    NULL; -- granted meanwhile by the migration of another database
END
$$;
GRANT INSERT, UPDATE ON deals TO coupond_operator;
