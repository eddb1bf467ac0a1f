-- 004_issue_hot_path.sql: the same rules on the L lane's hot path, at about
-- two thirds of the cost per payment (docs/benchmarks.md, "lane-l: the
-- store's cost").
--
-- 1. coupons.order_id is no longer a foreign key. Its guarantee, no coupon
--    without its payment, is kept by the coupons_inserted trigger (001), which
--    already checks, once per INSERT statement, that every order given coupons
--    exists, is issued and ends up with exactly its quantity; and a payment,
--    once there, is never deleted, truncated or renumbered (payments_no_delete,
--    payments_no_truncate, payments_guard). The foreign key checked the same
--    once per coupon row, through a query of its own: the most expensive step
--    of issuing a batch.
ALTER TABLE coupons DROP CONSTRAINT coupons_order_id_fkey;

-- 2. The character rules of codes, payment ids and currencies are the same
--    sets, checked without the regular expression engine: a value is made of
--    the allowed characters exactly when ltrim() with that set leaves nothing,
--    and all of them are single bytes, so octet_length() counts characters.
--    Existing rows are validated after the swap without blocking writes.
ALTER TABLE coupons DROP CONSTRAINT coupons_code_check,
    ADD CONSTRAINT coupons_code_check
        CHECK (octet_length(code) = 16
               AND ltrim(code, '0123456789ABCDEFGHJKMNPQRSTVWXYZ') = '') NOT VALID;
ALTER TABLE coupons VALIDATE CONSTRAINT coupons_code_check;

ALTER TABLE payments DROP CONSTRAINT payments_payment_id_check,
    ADD CONSTRAINT payments_payment_id_check
        CHECK (octet_length(payment_id) BETWEEN 1 AND 64
               AND ltrim(payment_id, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-') = '')
        NOT VALID,
    DROP CONSTRAINT payments_currency_check,
    ADD CONSTRAINT payments_currency_check
        CHECK (octet_length(currency) = 3 AND ltrim(currency, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') = '')
        NOT VALID;
ALTER TABLE payments VALIDATE CONSTRAINT payments_payment_id_check;
ALTER TABLE payments VALIDATE CONSTRAINT payments_currency_check;
