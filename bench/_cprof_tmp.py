import asyncio, sys, aiohttp
from pathlib import Path
from bench.run import Bench, REPO, DOMAIN
async def main(scn):
    work = REPO/"run"/"cprof"; work.mkdir(parents=True, exist_ok=True)
    b = Bench(work, 8, profile=False); b.logs.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(b.start_prosody); await b.start_bob()
    b.http = aiohttp.ClientSession(trust_env=False); b.write_lua()
    try:
        out = f"/tmp/p/{scn}.prof"
        await b.start_component("cp", REPO/"scripts"/"rest", source=REPO, python_args=("-m","cProfile","-o",out))
        s = {"message": (b.lua_msg, "/rest/stream/"), "iq": (b.lua_iq, "/rest/stream/"), "adhoc": (b.lua_adhoc, f"/rest/adhoc/{DOMAIN}")}[scn]
        await b.rest("w", "warm", s[0], s[1], seconds=1, record=False)
        await b.rest("m", scn, s[0], s[1], record=False)
        b.stop_component()
    finally:
        await b.http.close(); await b.close()
asyncio.run(main(sys.argv[1]))
