-- Which resource each object held, so that its quarantined records can be
-- exported per resource and fed back as that resource. Every object applied
-- before resources existed held posts.
ALTER TABLE applied_objects ADD COLUMN resource TEXT NOT NULL DEFAULT 'posts';
