"""The Eventarc receiver (Cloud Run): GCS upload events -> job records in the registry."""
