"""The local stack, without Docker: process supervision (`process`), Kafka (`kafka`), Redis
(`redis`), the services and their environment (`services`), the stacks (`stack`), the
command line (`python -m deploy.local`), and the API client tests and bench use (`client`)."""
