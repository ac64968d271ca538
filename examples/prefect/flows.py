"""The deployment the orders sensor runs: ``python flows.py`` serves it (Ctrl-C stops)."""

from prefect import flow


@flow(name="process-order", log_prints=True)
def process_order(order_id: str, amount: float) -> None:
    print(f"processing order {order_id}: {amount}")


if __name__ == "__main__":
    process_order.serve(name="production")
