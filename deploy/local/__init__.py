"""The local stack, without Docker: process supervision (`process`), Kafka (`kafka`), Redis
(`redis`), the services and their environment (`services`), the stacks (`stack`) and the
command line (`python -m deploy.local`)."""
