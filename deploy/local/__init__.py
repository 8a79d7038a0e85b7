"""The local stack: a real Apache Kafka (KRaft) broker and a real Redis, run from the project's state folder."""
