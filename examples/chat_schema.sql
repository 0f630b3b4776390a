-- The example chat schema the demo, the docs and rules.yaml use.
CREATE TABLE IF NOT EXISTS rooms (
  id int PRIMARY KEY,
  name text NOT NULL,
  tenant_id int NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS messages (
  id bigserial PRIMARY KEY,
  room_id int NOT NULL REFERENCES rooms (id),
  sender_id int NOT NULL,
  body text NOT NULL,
  sent_at timestamptz NOT NULL DEFAULT now(),
  edited_at timestamptz
);

-- Who is in which room: rules.yaml's lookup my_rooms reads it.
CREATE TABLE IF NOT EXISTS room_members (
  room_id int NOT NULL REFERENCES rooms (id),
  user_id int NOT NULL,
  PRIMARY KEY (room_id, user_id)
);

CREATE TABLE IF NOT EXISTS read_receipts (
  room_id int NOT NULL REFERENCES rooms (id),
  user_id int NOT NULL,
  last_read_id bigint NOT NULL,
  read_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (room_id, user_id)
);

INSERT INTO rooms (id, name) VALUES (1, 'general'), (2, 'random'), (3, 'support')
  ON CONFLICT DO NOTHING;
-- alice (10) is in general and random, bob (11) in support.
INSERT INTO room_members (room_id, user_id) VALUES (1, 10), (2, 10), (3, 11)
  ON CONFLICT DO NOTHING;
