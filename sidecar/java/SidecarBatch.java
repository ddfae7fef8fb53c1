// Packs a batch of Debezium ChangeEvent<String, String> into one UTF-8 byte[]:
// for each record three frames (destination, key, value), each an int32 length
// (-1 for null) followed by that many bytes. One JPype call per batch instead of
// several per record. Compiled at run time by the sidecar when a JDK compiler is
// available (see sidecar/sources/batch_packer.py); otherwise records cross one by one.
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;

import io.debezium.engine.ChangeEvent;

public final class SidecarBatch {
    private SidecarBatch() {}

    public static byte[] pack(List<?> records) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(records.size() * 2048);
        DataOutputStream out = new DataOutputStream(bytes);
        for (Object o : records) {
            ChangeEvent<?, ?> r = (ChangeEvent<?, ?>) o;
            frame(out, r.destination());
            frame(out, r.key());
            frame(out, r.value());
        }
        out.flush();
        return bytes.toByteArray();
    }

    private static void frame(DataOutputStream out, Object value) throws IOException {
        if (value == null) {
            out.writeInt(-1);
            return;
        }
        byte[] b = value.toString().getBytes(StandardCharsets.UTF_8);
        out.writeInt(b.length);
        out.write(b);
    }
}
