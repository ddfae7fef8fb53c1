// Kafka Connect's FileOffsetBackingStore, saved atomically. Kafka's save() truncates the
// offsets file and then writes it; a process killed in between (kill -9, OOM kill) leaves an
// empty or cut file, and Kafka's load() reads an empty file as "no offsets" without a word:
// the connector then starts over from its replication slot or binlog position, which the
// last flush may already have moved past records whose hooks never ran. This store writes
// the same format (a serialized HashMap<byte[], byte[]>, readable by FileOffsetBackingStore)
// to <file>.tmp and renames it over the file, so after a process crash (kill -9, OOM kill;
// the page cache survives) the file holds one complete flush. No fsync (one per batch would
// cost latency): after a machine crash the file may be older (records whose hooks ran are
// redelivered) or, on some filesystems, empty — which the sidecar refuses at start. Compiled at run time by the sidecar when a JDK compiler is available
// (sidecar/sources/java_helpers.py); used when the embedded engine's offset.storage is
// Kafka's FileOffsetBackingStore (sidecar/sources/embedded.py).
import java.io.BufferedOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.ObjectOutputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.Map;

import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.runtime.WorkerConfig;
import org.apache.kafka.connect.runtime.standalone.StandaloneConfig;
import org.apache.kafka.connect.storage.FileOffsetBackingStore;

import io.debezium.embedded.KafkaConnectUtil;

public class SidecarOffsetStore extends FileOffsetBackingStore {
    private File target;

    public SidecarOffsetStore() {
        super(KafkaConnectUtil.converterForOffsetStore());
    }

    @Override
    public void configure(WorkerConfig config) {
        super.configure(config);
        target = new File(config.getString(StandaloneConfig.OFFSET_STORAGE_FILE_FILENAME_CONFIG));
    }

    @Override
    protected void save() {
        File tmp = new File(target.getPath() + ".tmp");
        Map<byte[], byte[]> raw = new HashMap<>();
        for (Map.Entry<ByteBuffer, ByteBuffer> entry : data.entrySet()) {
            byte[] key = entry.getKey() != null ? entry.getKey().array() : null;
            byte[] value = entry.getValue() != null ? entry.getValue().array() : null;
            raw.put(key, value);
        }
        try (FileOutputStream file = new FileOutputStream(tmp)) {
            ObjectOutputStream out = new ObjectOutputStream(new BufferedOutputStream(file));
            out.writeObject(raw);
            out.flush();
        } catch (IOException e) {
            throw new ConnectException("could not write the offsets file " + tmp, e);
        }
        try {
            Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.ATOMIC_MOVE,
                       StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new ConnectException("could not replace the offsets file " + target, e);
        }
    }
}
