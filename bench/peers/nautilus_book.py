#!/usr/bin/env python3
"""nautilus_trader's L2 order book driven from Python, as its users drive it, applying the
same real Binance BTCUSDT diffs as kimp-bench (written by `kimp-bench --export-deltas`).

Two figures, both per diff message (mean 67.7 levels), median of REPS in-process runs:
- "build+apply": for each level build BookOrder(Price, Quantity) and call
  book.update / book.delete (the Cython API a Python strategy uses with raw floats/strings);
- "apply only": OrderBookDelta objects prebuilt before timing, then book.apply_delta.
Each run starts from the REST snapshot (untimed). Prints one JSON object on the last line.

usage: nautilus_book.py DELTAS_FILE [REPS]
"""
import json
import statistics
import sys
import time

from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder, OrderBookDelta
from nautilus_trader.model.enums import BookAction, BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity
import nautilus_trader


def load(path):
    snap, diffs = [], []
    with open(path) as f:
        head = f.readline().split()
        assert head[0] == "kimp-deltas", "not a kimp-bench deltas file"
        n_diffs = int(head[4])
        diffs = [[] for _ in range(n_diffs)]
        for line in f:
            i, side, px, qty = line.split()
            rec = (side == "b", px, qty)
            if i == "-1":
                snap.append(rec)
            else:
                diffs[int(i)].append(rec)
    return snap, diffs


def main():
    path = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    snap, diffs = load(path)
    n_levels = sum(len(d) for d in diffs)
    iid = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")

    def fresh():
        book = OrderBook(iid, BookType.L2_MBP)
        for is_bid, px, qty in snap:
            side = OrderSide.BUY if is_bid else OrderSide.SELL
            book.update(BookOrder(side, Price.from_str(px), Quantity.from_str(qty), 0), 0)
        return book

    def build_apply():
        book = fresh()
        t = time.perf_counter_ns()
        seq = 1
        for d in diffs:
            for is_bid, px, qty in d:
                side = OrderSide.BUY if is_bid else OrderSide.SELL
                order = BookOrder(side, Price.from_str(px), Quantity.from_str(qty), 0)
                if float(qty) == 0.0:
                    book.delete(order, 0, 0, seq)
                else:
                    book.update(order, 0, 0, seq)
            seq += 1
            book.best_bid_price()
            book.best_ask_price()
        return time.perf_counter_ns() - t, book

    def prebuilt():
        out = []
        seq = 1
        for d in diffs:
            row = []
            for is_bid, px, qty in d:
                side = OrderSide.BUY if is_bid else OrderSide.SELL
                action = BookAction.DELETE if float(qty) == 0.0 else BookAction.UPDATE
                row.append(OrderBookDelta(iid, action, BookOrder(side, Price.from_str(px), Quantity.from_str(qty), 0), 0, seq, 0, 0))
            out.append(row)
            seq += 1
        return out

    def apply_only(deltas):
        book = fresh()
        t = time.perf_counter_ns()
        for row in deltas:
            for d in row:
                book.apply_delta(d)
            book.best_bid_price()
            book.best_ask_price()
        return time.perf_counter_ns() - t, book

    ba = []
    for _ in range(reps):
        ns, book = build_apply()
        ba.append(ns / len(diffs))
    deltas = prebuilt()
    ao = []
    for _ in range(reps):
        ns, book2 = apply_only(deltas)
        ao.append(ns / len(diffs))
    res = {
        "nautilus_trader_version": nautilus_trader.__version__,
        "python": sys.version.split()[0],
        "diffs": len(diffs),
        "levels": n_levels,
        "reps": reps,
        "build_apply_ns_per_msg": round(statistics.median(ba), 1),
        "apply_only_ns_per_msg": round(statistics.median(ao), 1),
        "best_bid": str(book.best_bid_price()),
        "best_ask": str(book.best_ask_price()),
        "best_bid_apply_only": str(book2.best_bid_price()),
    }
    print(f"nautilus_trader {res['nautilus_trader_version']} (Python {res['python']}): "
          f"build+apply {res['build_apply_ns_per_msg']} ns/msg, apply only {res['apply_only_ns_per_msg']} ns/msg")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
