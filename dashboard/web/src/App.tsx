import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { BrowserRouter, Route, Routes } from "react-router";
import { isAuthNeeded, onAuthNeeded, setAuthNeeded } from "./api/auth";
import { ApiError } from "./api/client";
import { Layout } from "./components/Layout";
import { Login } from "./components/Login";
import { LiveProvider } from "./live/LiveProvider";
import { DefinitionsPage } from "./pages/DefinitionsPage";
import { JobPage } from "./pages/JobPage";
import { JobsPage } from "./pages/JobsPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { OverviewPage } from "./pages/OverviewPage";
import { QueuePage } from "./pages/QueuePage";
import { QueuesPage } from "./pages/QueuesPage";
import { RecurringPage } from "./pages/RecurringPage";
import { WorkersPage } from "./pages/WorkersPage";
import { useTheme } from "./theme";

function makeClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // Live events refresh what is on screen; no polling, no refetch storms on focus.
        staleTime: 30_000,
        refetchOnWindowFocus: false,
        retry: (n, err) => !(err instanceof ApiError && err.status >= 400 && err.status < 500) && n < 2,
      },
    },
  });
}

export function App() {
  const theme = useTheme();
  const [needLogin, setNeedLogin] = useState(isAuthNeeded());
  const [client, setClient] = useState(makeClient);
  useEffect(() => onAuthNeeded(setNeedLogin), []);
  if (needLogin) {
    return (
      <Login
        onDone={() => {
          setClient(makeClient()); // a fresh cache: nothing fetched while signed out survives
          setAuthNeeded(false);
        }}
      />
    );
  }
  return (
    <QueryClientProvider client={client}>
      <LiveProvider>
        <BrowserRouter>
          <Routes>
            <Route element={<Layout theme={theme} />}>
              <Route index element={<OverviewPage />} />
              <Route path="queues" element={<QueuesPage />} />
              <Route path="queues/:queue" element={<QueuePage />} />
              <Route path="jobs" element={<JobsPage />} />
              <Route path="jobs/:id" element={<JobPage />} />
              <Route path="recurring" element={<RecurringPage />} />
              <Route path="definitions" element={<DefinitionsPage />} />
              <Route path="workers" element={<WorkersPage />} />
              <Route path="*" element={<NotFoundPage />} />
            </Route>
          </Routes>
        </BrowserRouter>
      </LiveProvider>
    </QueryClientProvider>
  );
}
