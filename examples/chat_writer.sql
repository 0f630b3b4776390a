-- The demos' writer: one session posting a message every 300 ms, as an app would, with edits,
-- deletes, read receipts, typing notifications and a member (66, mallory) joining and leaving
-- room 1. Runs until its session is ended.
DO $$
DECLARE i int := 0; room int; msg bigint;
BEGIN
  PERFORM pg_sleep(1); -- let the consumers start first
  LOOP
    i := i + 1;
    room := 1 + i % 3;
    PERFORM pg_notify('typing', json_build_object('room', room, 'user', 10 + i % 4)::text);
    INSERT INTO messages (room_id, sender_id, body)
      VALUES (room, 10 + i % 4, 'message #' || i) RETURNING id INTO msg;
    COMMIT;
    IF i % 4 = 0 THEN
      UPDATE messages SET body = body || ' (edited)', edited_at = now() WHERE id = msg - 1;
      COMMIT;
    END IF;
    IF i % 5 = 0 THEN
      INSERT INTO read_receipts (room_id, user_id, last_read_id) VALUES (room, 20, msg)
        ON CONFLICT (room_id, user_id) DO UPDATE SET last_read_id = excluded.last_read_id,
                                                     read_at = now();
      COMMIT;
    END IF;
    IF i % 7 = 0 THEN
      DELETE FROM messages WHERE id = msg - 3;
      COMMIT;
    END IF;
    IF i % 20 = 10 THEN
      INSERT INTO room_members (room_id, user_id) VALUES (1, 66) ON CONFLICT DO NOTHING;
      COMMIT;
    ELSIF i % 20 = 0 THEN
      DELETE FROM room_members WHERE room_id = 1 AND user_id = 66;
      COMMIT;
    END IF;
    PERFORM pg_sleep(0.3);
  END LOOP;
END $$;
