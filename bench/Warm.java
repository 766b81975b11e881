// A warmed Java program for the bench: a thread pool runs some rounds of work
// (sorting, hashing, string building) so the JIT has compiled it, then the
// program follows the workload protocol of bench/workload.c: "ready", then each
// byte read on stdin prints CLOCK_REALTIME in nanoseconds, end of file exits.
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

public class Warm {
    static long work(long seed) {
        Random r = new Random(seed);
        int[] a = new int[20000];
        for (int i = 0; i < a.length; i++) a[i] = r.nextInt();
        java.util.Arrays.sort(a);
        HashMap<String, Integer> m = new HashMap<>();
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 2000; i++) {
            sb.setLength(0);
            sb.append("k").append(a[i] % 1000);
            m.merge(sb.toString(), 1, Integer::sum);
        }
        return a[a.length / 2] + m.size();
    }

    public static void main(String[] args) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(4);
        long sum = 0;
        for (int round = 0; round < 20; round++) {
            List<Future<Long>> fs = new ArrayList<>();
            for (int t = 0; t < 64; t++) {
                final long seed = round * 64L + t;
                fs.add(pool.submit(() -> work(seed)));
            }
            for (Future<Long> f : fs) sum += f.get();
        }
        System.out.println("ready " + (sum & 0xff));
        System.out.flush();
        while (System.in.read() >= 0) {
            Instant now = Instant.now();
            System.out.println(now.getEpochSecond() * 1_000_000_000L + now.getNano());
            System.out.flush();
        }
        pool.shutdownNow();
        System.exit(0);
    }
}
