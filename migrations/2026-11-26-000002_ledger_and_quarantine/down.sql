DROP TABLE quarantined_records;
DROP TABLE applied_objects;
