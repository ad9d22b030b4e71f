// Kafka's own default-partitioner hash, for test vectors: one line per argument,
// "<murmur2 as signed int32> <toPositive(murmur2)>". Run with Java 11+ single-file launch:
//   java -cp 'deploy/kafka/lib/*' tests/ingest/Murmur.java ID...
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.utils.Utils;

public class Murmur {
    public static void main(String[] args) {
        for (String id : args) {
            int hash = Utils.murmur2(id.getBytes(StandardCharsets.UTF_8));
            System.out.println(hash + " " + Utils.toPositive(hash));
        }
    }
}
