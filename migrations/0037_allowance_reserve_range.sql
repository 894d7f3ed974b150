-- A reservation may carry a range: `minimum` (at most `tokens`) is the least it accepts, and
-- `tokens` what it requests. It is granted the largest amount in that range that the limit
-- leaves after used and reserved, checked under the same row lock, and the full `tokens` on an
-- unlimited plan (limit -1). Without `minimum` it is granted `tokens` or nothing, as before.
-- The new column out_granted returns the granted tokens (0 for a reservation that did not fit
-- and for settles and releases). A new column changes the function's row type, which
-- CREATE OR REPLACE cannot do, so the function is dropped and created again in the migration's
-- transaction. Otherwise the function is the one of 0032_allowance_reported_usage.
DROP FUNCTION apply_allowance_batch(uuid, jsonb);
--> statement-breakpoint
CREATE FUNCTION apply_allowance_batch(p_user_id uuid, p_ops jsonb)
RETURNS TABLE (
  out_index integer,
  out_ok boolean,
  out_reservation uuid,
  out_charged bigint,
  out_released bigint,
  out_plan text,
  out_limit bigint,
  out_used bigint,
  out_reserved bigint,
  out_granted bigint
)
LANGUAGE plpgsql
AS $$
DECLARE
  v_plan text;
  v_limit bigint;
  v_used bigint;
  v_reserved bigint;
  v_period timestamptz;
  v_start_used bigint;
  v_start_reserved bigint;
  v_item record;
  v_op jsonb;
  v_tokens bigint;
  v_minimum bigint;
  v_released bigint;
  v_charged bigint;
  v_total bigint;
  v_event bigint;
  v_id uuid;
BEGIN
  SELECT u.plan, u.token_limit, u.tokens_used, u.tokens_reserved, u.period_started_at
    INTO v_plan, v_limit, v_used, v_reserved, v_period
    FROM users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % not found', p_user_id USING ERRCODE = 'no_data_found';
  END IF;
  v_start_used := v_used;
  v_start_reserved := v_reserved;

  FOR v_item IN
    SELECT (e.ordinality - 1)::integer AS idx, e.value AS op
    FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS e
    WHERE e.value->>'kind' IN ('settle', 'release')
    ORDER BY e.ordinality
  LOOP
    v_op := v_item.op;
    v_released := 0;
    IF v_op->>'reservation' IS NOT NULL THEN
      DELETE FROM token_reservations r
        WHERE r.id = (v_op->>'reservation')::uuid AND r.user_id = p_user_id
        RETURNING r.tokens INTO v_released;
      v_released := coalesce(v_released, 0);
      v_reserved := v_reserved - v_released;
    END IF;

    IF v_op->>'kind' = 'release' THEN
      RETURN QUERY SELECT v_item.idx, true, NULL::uuid, 0::bigint, v_released,
        v_plan, v_limit, v_used, v_reserved, 0::bigint;
      CONTINUE;
    END IF;

    v_total := (v_op->>'total')::bigint;
    IF v_op->>'source' <> 'platform' THEN
      v_charged := 0;
    ELSIF v_limit < 0 THEN
      v_charged := v_total;
    ELSE
      -- Usage is capped at what the limit leaves after the other calls' holds, so a low
      -- prompt estimate, or a hold the sweeper already released, never pushes
      -- used + reserved past the limit. The ledger row keeps the full total.
      v_charged := greatest(least(v_total, v_limit - v_used - v_reserved), 0);
    END IF;

    v_event := NULL;
    INSERT INTO token_events AS t (
      user_id, patch_request_id, path, provider, model, key_source,
      prompt_tokens, completion_tokens, total_tokens, charged_tokens,
      reported_prompt_tokens, reported_completion_tokens, reported_total_tokens,
      reservation_id, idempotency_key, period_started_at
    ) VALUES (
      p_user_id, (v_op->>'patchRequest')::uuid, v_op->>'path', v_op->>'provider',
      v_op->>'model', v_op->>'source', (v_op->>'prompt')::integer,
      (v_op->>'completion')::integer, v_total::integer, v_charged,
      (v_op->'reported'->>'prompt')::integer, (v_op->'reported'->>'completion')::integer,
      (v_op->'reported'->>'total')::integer,
      (v_op->>'reservation')::uuid, v_op->>'key', v_period
    )
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING t.id INTO v_event;

    IF v_event IS NULL THEN
      -- Settled before: the ledger already has this call, so nothing more is charged.
      RETURN QUERY SELECT v_item.idx, false, NULL::uuid, 0::bigint, v_released,
        v_plan, v_limit, v_used, v_reserved, 0::bigint;
    ELSE
      v_used := v_used + v_charged;
      RETURN QUERY SELECT v_item.idx, true, NULL::uuid, v_charged, v_released,
        v_plan, v_limit, v_used, v_reserved, 0::bigint;
    END IF;
  END LOOP;

  FOR v_item IN
    SELECT (e.ordinality - 1)::integer AS idx, e.value AS op
    FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS e
    WHERE e.value->>'kind' = 'reserve'
    ORDER BY e.ordinality
  LOOP
    v_op := v_item.op;
    v_tokens := greatest((v_op->>'tokens')::bigint, 1);
    v_minimum := least(greatest(coalesce((v_op->>'minimum')::bigint, v_tokens), 1), v_tokens);
    IF v_limit >= 0 THEN
      v_tokens := least(v_tokens, v_limit - v_used - v_reserved);
    END IF;
    IF v_tokens >= v_minimum THEN
      INSERT INTO token_reservations AS r (user_id, tokens, idempotency_key, expires_at)
        VALUES (p_user_id, v_tokens, v_op->>'key',
                now() + make_interval(secs => (v_op->>'ttl')::double precision))
        RETURNING r.id INTO v_id;
      v_reserved := v_reserved + v_tokens;
      RETURN QUERY SELECT v_item.idx, true, v_id, 0::bigint, 0::bigint,
        v_plan, v_limit, v_used, v_reserved, v_tokens;
    ELSE
      RETURN QUERY SELECT v_item.idx, false, NULL::uuid, 0::bigint, 0::bigint,
        v_plan, v_limit, v_used, v_reserved, 0::bigint;
    END IF;
  END LOOP;

  IF v_used <> v_start_used OR v_reserved <> v_start_reserved THEN
    UPDATE users u SET tokens_used = v_used, tokens_reserved = v_reserved
      WHERE u.id = p_user_id;
  END IF;
END;
$$;
